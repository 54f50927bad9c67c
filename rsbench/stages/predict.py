"""``rsbench predict``: Cohen et al.'s PREDICT (binomial-test abstain) over the test set."""

from __future__ import annotations

from pathlib import Path

import hydra
import pandas as pd
from omegaconf import DictConfig

from rsbench.errors import check_count, check_probability
from rsbench.stages.common import CONF_DIR, run_stage
from rsbench.stages.points import prepare_point_run

BASE_COLUMNS = ("idx", "label", "predict", "correct", "time_s")
# the fields of Cohen's PREDICT; a method whose predict returns others declares ``predict_columns``
PREDICT_COLUMNS = ("method", "sigma", "n", "alpha", "count_a", "count_b", "pvalue")


def predict(cfg: DictConfig, out: Path) -> None:
    n = check_count("predict.n", cfg.predict.n)
    alpha = check_probability("predict.alpha", cfg.predict.alpha)
    run = prepare_point_run(cfg, "predict", out, {"n": n, "alpha": alpha})
    columns = BASE_COLUMNS + tuple(getattr(run.method, "predict_columns", PREDICT_COLUMNS))
    run.run(columns, lambda x, i: run.smoothed.predict_fields(x, i, run.seed, n, alpha))
    df = pd.read_csv(run.csv_path)
    print(f"\n{run.csv_path}: {len(df)} points, accuracy {df['correct'].mean():.3f}, "
          f"abstain {(df['predict'] < 0).mean():.3f}, {df['time_s'].mean():.3f} s/point")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    run_stage("predict", predict, cfg)
