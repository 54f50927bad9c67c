"""``rsbench verify RUN_DIR|CSV``: recompute every row's certificate from what the row records.

A results CSV is only as good as its rows: an edited radius, a row copied from another run or a bug in a
certificate would otherwise be summarised as if it were a proof. For every row this recomputes, with the
same pure functions certify uses (:mod:`rsbench.certify.certificates`, :mod:`rsbench.certify.bounds`):

- the top-class bound from the recorded votes where the row has them: ``p_lower`` = one-sided
  Clopper-Pearson at ``alpha`` of ``count`` successes in ``n_used`` draws (at alpha / #looks for a sequential
  run, whose looks the run dir's fingerprint records) -- gaussian (hard), laplace;
- the radius from the bounds and the method's parameters -- gaussian (hard, soft), laplace, mog (paper,
  pooled, exact), idrs, dsmooth (Mahalanobis radius and its largest l2 ball, from the covariance summary
  ``logdet_d`` = log det(Sigma) / d and ``min_eig`` that each DSmooth row records);
- ``sound`` from the method and certificate; ``predict`` = -1 exactly when the radius is 0; ``correct`` =
  (predict == label).

The method's parameters come from the run's saved config (``.hydra/config.yaml`` beside the CSV), else
from the row's own columns. Rows whose certificate needs what no row records (MoG componentwise: the
per-component bounds; DSmooth rows written before they recorded ``logdet_d`` / ``min_eig``; SRA: the logits)
are counted as skipped, never as verified, and fail the check unless ``--allow-unverifiable``. ``--sample K``
spot-checks K rows per file, drawn with ``--seed`` (a quick check of large result sets; the summary says
it was a sample).
Points that the run's plan names but that have no row fail it unless ``--allow-missing``, and the summary
reports the base model's sha256 against the published manifest (a run whose rows came from an altered copy of
a published model fails). Exit status: 0 when every row recomputes and none is missing, 1 otherwise (one line
per problem, a row's with its line number), 2 on unusable input (an empty file, a file with no rows).
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from rsbench.analysis.attack_bound import attack_bound
from rsbench.certify.recompute import NotRecomputable
from rsbench.errors import RsbenchError
from rsbench.methods import METHODS, method_from_params
from rsbench.models.manifest import find_by_digest, manifest_entry
from rsbench.results import SCHEMA, is_cohen_tsv, parse_rows, read_json, read_results

TOL = 1e-9  # relative: the CSV stores floats with repr, so a recomputed value agrees to the last bit or is wrong


def _typed(header: tuple[str, ...], fields: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name, value in zip(header, fields, strict=True):
        if name in SCHEMA:
            row[name] = SCHEMA[name](value)
        elif value in ("True", "False"):
            row[name] = value == "True"
        elif value in ("", "None"):
            row[name] = None
        else:
            row[name] = _number(value)
    return row


def _number(text: str) -> Any:
    """A column's text as the value the row held: an int stays an int (MoG's K=10, not 10.0), else a float, else
    the text."""
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text


def _close(a: float, b: float) -> bool:
    return a == b or math.isclose(a, b, rel_tol=TOL, abs_tol=1e-12)


def verify(path: Path, allow_unverifiable: bool = False, sample: int | None = None, seed: int = 0,
           allow_missing: bool = False, torn_ok: bool = False) -> tuple[list[str], str]:
    """(one message per problem, the summary line) for a run dir or a certify CSV.

    Problems: a row that does not recompute; rows that cannot be recomputed, unless ``allow_unverifiable``;
    points the run's plan (``certify.plan.json``) names that have no row, unless ``allow_missing``; a model whose
    recorded sha256 differs from the published model the run names. ``sample``: recompute only that many rows,
    drawn uniformly without replacement with ``seed`` (all rows when None or at least the file's length); line
    numbers in messages stay those of the file. ``torn_ok``: a torn last line (a killed write) is left out.
    """
    if sample is not None and sample < 1:
        raise RsbenchError(f"--sample must be a positive number of rows, got {sample}")
    csv_path = path / "certify.csv" if path.is_dir() else path
    if not csv_path.is_file():
        raise RsbenchError(f"{path} is neither a certify.csv nor a run dir holding one")
    if is_cohen_tsv(csv_path):
        raise RsbenchError(f"{csv_path} is a per-image file of Cohen et al.: it records radii but no votes or "
                           "bounds, so nothing can be recomputed")
    data = csv_path.read_bytes()
    if torn_ok and data and not data.endswith(b"\n"):
        data = data[:data.rfind(b"\n") + 1]
    if not data.strip():
        raise RsbenchError(f"{csv_path} is empty: no header and no rows, nothing to verify")
    header, lines = parse_rows(csv_path, data)  # types and structure first: a damaged file is one error
    if not lines:
        raise RsbenchError(f"{csv_path} holds no rows (only its header): nothing to verify")
    run = csv_path.parent
    saved = run / ".hydra" / "config.yaml"
    config = OmegaConf.to_container(OmegaConf.load(saved).method, resolve=True) if saved.is_file() else None
    fingerprint_path = run / "certify.fingerprint.json"
    fingerprint = read_json(fingerprint_path, "the run's configuration") if fingerprint_path.is_file() else {}
    sequential = fingerprint.get("sequential")
    problems: list[str] = []
    model_problem, model_note = model_provenance(fingerprint.get("model"))
    if model_problem:
        problems.append(f"{csv_path}: {model_problem}")
    checked, skipped = 0, Counter()
    methods: dict[str, Any] = {}
    order = {idx: k for k, idx in enumerate(lines)}
    chosen = set(lines) if sample is None or sample >= len(lines) else \
        set(random.Random(seed).sample(list(lines), sample))
    for idx, line in lines.items():
        if idx not in chosen:
            continue
        number = order[idx] + 2
        row = _typed(header, next(csv.reader([line])))
        name = str(row.get("method", ""))
        if not hasattr(METHODS.get(name) if name in METHODS else None, "recompute"):
            skipped[f"method {name or '?'}: its certificate needs more than a row records"] += 1
            continue
        if name not in methods:
            params = dict(config) if config and config.get("name") == name else {**row, "name": name}
            try:
                methods[name] = method_from_params(params)
            except (RsbenchError, TypeError, KeyError) as exc:
                raise RsbenchError(f"{csv_path}: cannot rebuild method {name!r} from the run's config or its rows "
                                   f"({exc})") from None
        method = methods[name]
        try:
            expect = method.recompute(row, sequential)
        except NotRecomputable as exc:
            skipped[str(exc)] += 1
            continue
        checked += 1
        expect["sound"] = bool(method.sound)
        found = []
        for key, value in expect.items():
            got = row.get(key)
            ok = got == value if isinstance(value, bool) else (got is not None and _close(float(got), float(value)))
            if not ok:
                found.append(f"{key}={got!r} recorded, {value!r} recomputed")
        if (row["predict"] == -1) != (float(row["radius"]) == 0.0):
            found.append(f"predict={row['predict']} with radius={row['radius']!r} (abstain exactly when radius is 0)")
        if "label" in row and "correct" in row and row["correct"] != int(row["predict"] == row["label"]):
            found.append(f"correct={row['correct']} but predict={row['predict']}, label={row['label']}")
        if found:
            problems.append(f"{csv_path}, line {number} (idx {idx}): " + "; ".join(found))
    rest = "".join(f" ({n} not recomputable: {why})" for why, n in skipped.items())
    if skipped and not allow_unverifiable:
        problems.append(f"{csv_path}: {sum(skipped.values())} row(s) could not be recomputed, so they are not "
                        "verified (--allow-unverifiable accepts that)")
    missing = missing_points(run, set(lines))
    if missing and not allow_missing:
        shown = ", ".join(map(str, missing[:8])) + (", ..." if len(missing) > 8 else "")
        problems.append(f"{csv_path}: {len(missing)} point(s) of the run's plan have no row (idx {shown}): the run "
                        "is unfinished (re-run its command) or rows were deleted (--allow-missing accepts that)")
    if checked == 0:
        verdict = "nothing verified"
    elif problems:
        verdict = f"{len(problems)} problem(s)"
    else:
        verdict = "every recomputed radius, bound and sound flag agrees"
    of = f"{len(lines)} rows" if len(chosen) == len(lines) else \
        f"{len(chosen)} rows drawn with seed {seed} from {len(lines)}"
    return problems, (f"{csv_path}: {checked} of {of} recomputed from their votes and bounds, "
                      f"{sum(skipped.values())} skipped{rest}; {model_note}: {verdict}")


def missing_points(run: Path, present: set[int]) -> list[int]:
    """The indices the run dir's plan (``certify.plan.json``) names that have no row; [] without a plan."""
    plan = run / "certify.plan.json"
    if not plan.is_file():
        return []
    indices = read_json(plan, "the run's plan").get("indices", [])
    return sorted(set(map(int, indices)) - present)


PUBLISHED_MODELS = Path(__file__).resolve().parents[1] / "outputs" / "published" / "models"


def model_provenance(model: dict[str, Any] | None) -> tuple[str | None, str]:
    """(a problem or None, a note) on the base model a run's fingerprint records: its sha256 against the
    manifest beside the checkpoint it names, or the published models' manifest."""
    if not model:
        return None, "model: not recorded (no fingerprint beside the CSV)"
    named = model.get("checkpoint") or model.get("weights_file")
    digest = model.get("sha256")
    if not digest:
        return None, f"model {named}: no sha256 recorded (a run made before rsbench recorded it)"
    entry = None
    if named and not str(named).startswith("cache:") and Path(named).is_file():
        real, entry = manifest_entry(named)
        if entry is not None and entry.get("sha256") != digest:
            return (f"the rows were computed from a model with sha256 {digest[:16]}..., not from the published "
                    f"{real} (sha256 {str(entry.get('sha256'))[:16]}...): a copied or altered model"), \
                f"model {named}: NOT the published one"
        if entry is not None:
            return None, f"model {named}: the published model (sha256 {digest[:12]}... as in its manifest)"
    found = find_by_digest(digest, [PUBLISHED_MODELS])
    if found is not None:
        return None, f"model: the published {found[0].name} (sha256 {digest[:12]}... as in its manifest)"
    return None, f"model {named}: sha256 {digest[:12]}..., not a published model"


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="rsbench verify", description="Recompute every row's radius, bounds and "
                                 "sound flag from what the row records; exit 1 on any mismatch, on rows that cannot "
                                 "be recomputed and on planned points without a row.")
    ap.add_argument("paths", type=Path, nargs="+", help="certify run dirs or certify.csv files")
    ap.add_argument("--allow-unverifiable", action="store_true",
                    help="accept rows whose certificate cannot be recomputed (counted as skipped, never as verified)")
    ap.add_argument("--allow-missing", action="store_true",
                    help="accept a run whose plan names points without a row (an unfinished run)")
    ap.add_argument("--strict", action="store_true", help=argparse.SUPPRESS)  # the default since issue 42
    ap.add_argument("--sample", type=int, default=None, metavar="K",
                    help="spot-check K rows per file, drawn with --seed, instead of every row")
    ap.add_argument("--seed", type=int, default=0, help="seed of --sample's draw (default 0)")
    ap.add_argument("--attacked", type=Path, nargs="+", default=[], metavar="PREDICT_RUN",
                    help="predict runs with predict.attack (one per eps) of the same model, smoothing and points: "
                         "also fail where a certify run's certified accuracy at the attack's eps lies above the "
                         "attacked accuracy beyond both intervals")
    args = ap.parse_args(argv)
    failed = False
    try:
        attacked = _attacked_runs(args.attacked)
        for path in args.paths:
            problems, summary = verify(path, args.allow_unverifiable, args.sample, args.seed, args.allow_missing)
            for p in problems:
                print(p)
            print(summary)
            failed |= bool(problems)
            if attacked:
                certified = read_results(_csv(path))
                for run, df in attacked.values():
                    problem = same_classifier(path, run, set(certified["idx"]), set(df["idx"]))
                    if problem:
                        print(problem)
                        failed = True
                table = attack_bound(certified, {eps: df for eps, (_, df) in attacked.items()})
                print(format_attack_bound(table))
                failed |= bool(table["violated"].any())
    except RsbenchError as exc:
        print(f"rsbench verify: error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(1 if failed else 0)


def _csv(path: Path, name: str = "certify.csv") -> Path:
    return path / name if path.is_dir() else path


def _attacked_runs(paths: list[Path]) -> dict[float, tuple[Path, pd.DataFrame]]:
    """{attack eps: (run dir, rows)} of predict runs made with predict.attack (one eps per run, one run per eps)."""
    runs: dict[float, tuple[Path, pd.DataFrame]] = {}
    for path in paths:
        csv = _csv(path, "predict.csv")
        if not csv.is_file():
            raise RsbenchError(f"{csv}: no such predict.csv (give predict run dirs made with predict.attack)")
        df = pd.read_csv(csv)
        if "attack_eps" not in df or df["attack_eps"].nunique() != 1:
            raise RsbenchError(f"{csv} is not an attacked predict run (no single attack_eps column value)")
        eps = float(df["attack_eps"].iloc[0])
        if eps in runs:
            raise RsbenchError(f"{runs[eps][0]} and {csv.parent} both attack at eps {eps:g}: give one run per eps")
        runs[eps] = (csv.parent, df)
    return runs


def same_classifier(certify_path: Path, attack_run: Path, certified: set[int], attacked: set[int]) -> str | None:
    """None when the attacked run bounds the certify run: the same base model (sha256, else its recorded identity),
    the same smoothing and dataset, and the same points; else the problem, naming what differs."""
    run = certify_path if certify_path.is_dir() else certify_path.parent
    paths = run / "certify.fingerprint.json", attack_run / "predict.fingerprint.json"
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        return (f"{attack_run}: cannot tell that it attacks the classifier of {certify_path}: no {', '.join(missing)} "
                "(--attacked compares run dirs made by rsbench certify and predict)")
    a, b = (read_json(p, "the run's configuration") for p in paths)
    differ = [key for key in ("dataset", "method") if a.get(key) != b.get(key)]
    ma, mb = a.get("model") or {}, b.get("model") or {}
    same_model = ma.get("sha256") == mb.get("sha256") if ma.get("sha256") and mb.get("sha256") else \
        all(ma.get(k) == mb.get(k) for k in ("arch", "params", "checkpoint", "weights_file", "clean_acc"))
    if not same_model:
        differ.append("model")
    if certified != attacked:
        differ.append(f"points ({len(certified)} certified, {len(attacked)} attacked, "
                      f"{len(certified & attacked)} in common)")
    if differ:
        return f"{attack_run} does not attack the smoothed classifier of {run}: they differ in {', '.join(differ)}"
    return None


def format_attack_bound(table: pd.DataFrame) -> str:
    """The attack-bound table as text: one line per eps, certified vs attacked accuracy with intervals."""
    lines = ["eps    points  certified [interval]     attacked [interval]      "]
    for r in table.itertuples():
        flag = "VIOLATED: certified above attacked beyond both intervals" if r.violated else "ok"
        lines.append(f"{r.eps:<6g} {r.points:<7d} {r.certified:.3f} [{r.certified_lo:.3f}, {r.certified_hi:.3f}]  "
                     f"{r.attacked:.3f} [{r.attacked_lo:.3f}, {r.attacked_hi:.3f}]  {flag}")
    return "\n".join(lines)
