"""``rsbench predict``: Cohen et al.'s PREDICT (binomial-test abstain) over the test set."""

from __future__ import annotations

from pathlib import Path

import hydra
import pandas as pd
from omegaconf import DictConfig

from rsbench.errors import check_count, check_probability
from rsbench.methods import make_method
from rsbench.results import check_fingerprint
from rsbench.stages.common import (
    CONF_DIR,
    dataset_split,
    plain,
    point_counts,
    resolve_model,
    run_points,
    run_stage,
    select_device,
    select_indices,
)

COLUMNS = ("idx", "label", "predict", "correct", "time_s", "method", "sigma", "n", "alpha",
           "count_a", "count_b", "pvalue")


def predict(cfg: DictConfig, out: Path) -> None:
    p = cfg.predict
    n = check_count("predict.n", p.n)
    alpha = check_probability("predict.alpha", p.alpha)
    batch = check_count("predict.batch", p.batch)
    method = make_method(plain(cfg.method))
    device = select_device(cfg.device)
    test_ds, spec = dataset_split(cfg, "test")
    indices = select_indices(len(test_ds), p.skip, p.max)
    model, meta = resolve_model(cfg, spec, method.train_sigma, device)
    csv_path = out / "predict.csv"
    if p.overwrite and csv_path.exists():
        csv_path.unlink()
    check_fingerprint(out / "predict.fingerprint.json",
                      {"dataset": plain(cfg.dataset), "checkpoint": meta.get("checkpoint"),
                       "method": plain(cfg.method), "n": n, "alpha": alpha, "seed": int(cfg.seed)},
                      bool(p.overwrite))

    def evaluate(x, i):
        return method.predict(point_counts(model, method.noise, spec.num_classes, batch, int(cfg.seed), x, i),
                              n, alpha)

    run_points(csv_path, COLUMNS, indices, test_ds, spec, device, f"predict {method.label()}", evaluate)
    df = pd.read_csv(csv_path)
    print(f"\n{csv_path}: {len(df)} points, accuracy {df['correct'].mean():.3f}, "
          f"abstain {(df['predict'] < 0).mean():.3f}, {df['time_s'].mean():.3f} s/point")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    run_stage("predict", predict, cfg)
