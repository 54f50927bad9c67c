"""``rsbench certify``: Cohen et al.'s CERTIFY over the test set, one flushed CSV row per point."""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import hydra
import pandas as pd
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, open_dict

from rsbench.analysis.curves import format_table, mark_unsound, summary_table
from rsbench.analysis.intervals import check_level
from rsbench.attacks import check_attack, run_attack
from rsbench.certify.bounds import max_certifiable_p, n_to_reach
from rsbench.certify.sequential import SequentialSpec
from rsbench.certify.smoothing import ABSTAIN
from rsbench.errors import RsbenchError, check_count, check_positive, check_probability, require
from rsbench.methods import make_method
from rsbench.plot.certified_accuracy import plot_certified_accuracy
from rsbench.stages.common import CONF_DIR, log, plain, run_stage
from rsbench.stages.points import prepare_point_run
from rsbench.stages.rundir import current, run_dir_lock
from rsbench.verify import verify

BASE_COLUMNS = ("idx", "label", "predict", "radius", "correct", "time_s")
ATTACK_COLUMNS = ("attack_norm", "attack_inside")
# one attack at a time: attacks may seed and draw from torch's global generator, which the threads of
# certify.points_per_batch share, so attacking points one by one keeps every row what it is alone
_ATTACK_LOCK = threading.Lock()


def attack_row(method, run, attack: dict, x: torch.Tensor, idx: int, radius: float, predict: int) -> dict:
    """Attack test point ``idx`` (the base model, its true label) and measure the perturbation in the norm
    the method certifies: ``attack_norm``, and ``attack_inside`` = 1 if it lies in the certified region."""

    label = torch.tensor([int(run.test_ds[idx][1])], device=x.device)
    with _ATTACK_LOCK:
        delta = (run_attack(attack, run.model, x.unsqueeze(0), label) - x.unsqueeze(0))[0]
    dist = method.distance(delta) if hasattr(method, "distance") else float(delta.norm())
    return {"attack_norm": dist, "attack_inside": int(predict != ABSTAIN and dist <= radius)}


def refuse_edited_rows(out: Path) -> None:
    """Resuming: the rows already in ``out/certify.csv`` are kept as done only if they recompute from their votes
    (``rsbench verify``'s check, :func:`rsbench.verify.verify`); the first that does not is named with its line."""
    csv_path = out / "certify.csv"
    data = csv_path.read_bytes() if csv_path.is_file() else b""
    if len(data[:data.rfind(b"\n") + 1].splitlines()) <= 1:  # no complete row yet (a torn last line is not one)
        return
    problems, _ = verify(out, allow_unverifiable=True, allow_missing=True, torn_ok=True)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise RsbenchError(f"cannot resume: {problems[0]}{more}. The file was edited or damaged: delete the line(s) "
                           "(re-running recomputes them) or start afresh with certify.overwrite=true")


def warn_radius_cap(method, n: int, alpha: float, largest: float) -> None:
    """One warning line when n and alpha cap every radius below the largest radius of the table (``radii``):
    the cap (every draw correct) and the n that would lift it."""
    cap = method.radius_cap(n, alpha) if hasattr(method, "radius_cap") else None
    if cap is None or cap >= largest:
        return
    need = n_to_reach(lambda m: method.radius_cap(m, alpha), largest, n)
    lift = f"certify.n={need:,} would reach it" if need else "no feasible n reaches it"
    log.warning("certify.n=%d at alpha=%g caps every radius at %.3f (all draws correct), below the largest radius "
                "in radii (%g): %s", n, alpha, cap, largest, lift)


def certify(cfg: DictConfig, out: Path) -> None:
    """One certify run in ``out``; with ``method.certificate=[a, b, ...]``, one run per certificate in
    ``out/certificate-<a>``, ... that share their Monte Carlo draws (:func:`certify_shared`)."""
    certificates = cfg.method.get("certificate")
    if isinstance(certificates, ListConfig | list | tuple):
        certify_shared(cfg, out, [str(c) for c in certificates])
    else:
        certify_run(cfg, out)


def certify_shared(cfg: DictConfig, out: Path, certificates: list[str]) -> None:
    """``method.certificate=[a, b, ...]``: the run each certificate gives alone (``method.certificate=a``, its own
    fingerprint, CSV and figure), in ``out/certificate-a``, ...; one sampling pass serves every certificate that
    draws the same way (e.g. MoG's paper and pooled certificates both bound the pooled count of N mixture
    draws), so its rows are those of separate runs (``time_s`` aside: a run that reuses draws times only its own
    arithmetic). Each sub-run resumes on its own and can be re-run alone with its single certificate."""

    require(len(certificates) > 0 and len(set(certificates)) == len(certificates),
            f"method.certificate={certificates} must list distinct certificates")
    subs = []
    for name in certificates:
        sub = copy.deepcopy(cfg)
        with open_dict(sub):
            sub.method.certificate = name
        make_method(plain(sub.method))  # every certificate is valid before any run dir is made
        subs.append((name, sub))
    memo: dict = {}
    tables = {}
    task = [str(o) for o in HydraConfig.get().overrides.task] if HydraConfig.initialized() else []
    for name, sub in subs:
        sub_out = out / f"certificate-{name}"
        sub_out.mkdir(parents=True, exist_ok=True)
        records = current()
        if records is not None:  # what re-runs this certificate alone: its config and the command's overrides
            alone = [o for o in task if o.partition("=")[0] != "method.certificate"] + [f"method.certificate={name}"]
            records.plan_inner(sub_out, sub, alone, task)
        with run_dir_lock(sub_out, "certify"):
            tables.update(certify_run(sub, sub_out, memo))
    print(f"\n{out}: {len(subs)} certificates, draws shared where they coincide")
    print(format_table(summary_table(tables, list(cfg.radii), check_level(cfg.get("ci_level")))), flush=True)
    unsound = [label for label in tables if label.endswith("unsound)")]
    if unsound:  # the last thing the user reads
        log.warning("radii of %s are NOT sound (sound=False): they are not proofs", "; ".join(unsound))


def certify_run(cfg: DictConfig, out: Path, memo: dict | None = None) -> dict[str, pd.DataFrame]:
    """Cohen et al.'s CERTIFY at every selected test point into ``out/certify.csv`` (resuming); ``memo``: draws
    shared with other runs of this invocation (:meth:`rsbench.smoothed.Smoothed.share_draws`). Returns
    {label: rows} for the summary table."""
    c = cfg.certify
    n0, n = check_count("certify.n0", c.n0), check_count("certify.n", c.n)
    alpha = check_probability("certify.alpha", c.alpha)
    if max_certifiable_p(n, alpha) <= 0.5:
        log.warning("certify.n=%d is too small for alpha=%g: no point can be certified (all abstain)", n, alpha)
    sequential = None
    if c.get("sequential", False):
        require(c.max_radius is not None, "certify.sequential=true needs certify.max_radius=<radius to certify>")
        sequential = SequentialSpec(check_count("certify.seq_n_min", c.seq_n_min),
                                    check_positive("certify.max_radius", c.max_radius))
    level = check_level(cfg.get("ci_level"))
    settings = {"n0": n0, "n": n, "alpha": alpha}
    if sequential:
        settings["sequential"] = {"n_min": sequential.n_min, "max_radius": sequential.max_radius}
    attack = plain(c.get("attack"))
    if attack:
        attack = check_attack(attack, "certify.attack")
    if not c.overwrite:
        refuse_edited_rows(out)
    run = prepare_point_run(cfg, "certify", out, settings)
    if memo is not None:
        run.smoothed.share_draws(memo)
    method = run.method
    if getattr(method, "warning", None):
        log.warning(method.warning)
    warn_radius_cap(method, n, alpha, max(cfg.radii or [0.0]))
    columns = BASE_COLUMNS + tuple(col for col in method.columns if col not in BASE_COLUMNS)
    if attack:
        columns += ATTACK_COLUMNS

    def evaluate(x, i):
        row = run.smoothed.certify_fields(x, i, run.seed, n0, n, alpha, sequential)
        if attack:
            row.update(attack_row(method, run, attack, x, i, float(row["radius"]), int(row["predict"])))
        return row

    run.run(columns, evaluate)

    df = pd.read_csv(run.csv_path)
    label = mark_unsound(method.label(), df)
    title = f"{label}, {run.meta['arch']}, n={n}, {run.spec.name}"
    figure = plot_certified_accuracy({label: df}, out / "certified_accuracy", title=title, bands=level)
    print(f"\n{run.csv_path}  ({run.spec.name}, {run.meta['arch']}, n0={n0}, n={n}, alpha={alpha})")
    print(format_table(summary_table({label: df}, list(cfg.radii), level)))
    print(f"figure: {figure[0]}", flush=True)
    if label != method.label():  # the last thing the user reads
        log.warning("radii in %s are NOT sound (sound=False; certificate %s): they are not proofs. %s",
                    run.csv_path, df["certificate"].iloc[0] if "certificate" in df else "?", method.warning or "")
    return {label: df}


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="certify")
def main(cfg: DictConfig) -> None:
    run_stage("certify", certify, cfg)
