"""``rsbench certify``: Cohen et al.'s CERTIFY over the test set, one flushed CSV row per point."""

from __future__ import annotations

from pathlib import Path

import hydra
import pandas as pd
from omegaconf import DictConfig

from rsbench.analysis.curves import format_table, summary_table
from rsbench.certify.bounds import max_certifiable_p
from rsbench.errors import check_count, check_probability
from rsbench.methods import make_method
from rsbench.results import check_fingerprint
from rsbench.stages.common import (
    CONF_DIR,
    dataset_split,
    log,
    plain,
    point_counts,
    resolve_model,
    run_points,
    run_stage,
    select_device,
    select_indices,
)

BASE_COLUMNS = ("idx", "label", "predict", "radius", "correct", "time_s")


def certify(cfg: DictConfig, out: Path) -> None:
    c = cfg.certify
    n0, n = check_count("certify.n0", c.n0), check_count("certify.n", c.n)
    alpha = check_probability("certify.alpha", c.alpha)
    batch = check_count("certify.batch", c.batch)
    method = make_method(plain(cfg.method))
    device = select_device(cfg.device)
    test_ds, spec = dataset_split(cfg, "test")
    indices = select_indices(len(test_ds), c.skip, c.max)
    if max_certifiable_p(n, alpha) <= 0.5:
        log.warning("certify.n=%d is too small for alpha=%g: no point can be certified (all abstain)", n, alpha)
    if spec.stand_in:
        log.warning("dataset %s is synthetic stand-in data: this is a smoke run, not a result", spec.name)
    model, meta = resolve_model(cfg, spec, method.train_sigma, device)

    csv_path = out / "certify.csv"
    if c.overwrite and csv_path.exists():
        csv_path.unlink()
    model_keys = ("arch", "params", "checkpoint", "weights_file", "train_noise_sigma", "clean_acc")
    check_fingerprint(out / "certify.fingerprint.json",
                      {"dataset": plain(cfg.dataset), "model": {k: meta.get(k) for k in model_keys},
                       "method": plain(cfg.method), "n0": n0, "n": n, "alpha": alpha, "seed": int(cfg.seed)},
                      bool(c.overwrite))
    columns = BASE_COLUMNS + tuple(col for col in method.columns if col not in BASE_COLUMNS)

    def evaluate(x, i):
        return method.certify(point_counts(model, method.noise, spec.num_classes, batch, int(cfg.seed), x, i),
                              n0, n, alpha)

    run_points(csv_path, columns, indices, test_ds, spec, device, f"certify {method.label()}", evaluate)

    df = pd.read_csv(csv_path)
    if "sound" in df and not df["sound"].astype(bool).all():
        log.warning("some radii in %s are NOT sound (sound=False): see the certificate column", csv_path)
    print(f"\n{csv_path}  ({spec.name}, {meta['arch']}, n0={n0}, n={n}, alpha={alpha})")
    print(format_table(summary_table({method.label(): df}, list(cfg.radii))))


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="certify")
def main(cfg: DictConfig) -> None:
    run_stage("certify", certify, cfg)
