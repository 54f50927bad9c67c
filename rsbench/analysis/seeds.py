"""Runs that differ only in ``seed`` (training seed and certification seed) as replicates of one experiment.

``rsbench certify -m seed=0,1,2`` trains (or loads) one model per seed and certifies with per-seed noise.
``rsbench plot`` groups such runs: the curve and every summary value are the mean over seeds, and the
interval is the t-interval across seeds at the configured level,
mean ± t_{S-1, (1+level)/2} · sd / sqrt(S), which contains the seed-to-seed spread of the whole
pipeline (training, test-point noise) rather than only the test-point sampling of one run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from rsbench.analysis.curves import summary
from rsbench.errors import RsbenchError

IGNORED = ("seed", "hydra", "outputs_dir")  # what may differ between replicates


def replicate_key(config: dict[str, Any] | None, fallback: str) -> str:
    """A key equal for runs whose saved configs agree apart from ``seed`` (``fallback`` without a config)."""
    if config is None:
        return fallback
    return json.dumps({k: v for k, v in config.items() if k not in IGNORED}, sort_keys=True, default=str)


def across_seeds(values: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, lo, hi) over axis 0 (one row per seed): the t-interval at ``level``; NaN bounds for one seed."""
    v = np.asarray(values, dtype=float)
    mean = v.mean(axis=0)
    s = len(v)
    if s < 2:
        return mean, np.full_like(mean, np.nan), np.full_like(mean, np.nan)
    half = student_t.ppf((1 + level) / 2, s - 1) * v.std(axis=0, ddof=1) / np.sqrt(s)
    return mean, mean - half, mean + half


def seed_summary(frames: Sequence[pd.DataFrame], radii: Sequence[float], level: float | None) -> dict[str, float]:
    """One summary row for replicates: each value the mean over seeds; with ``level``, ``lo`` / ``hi`` the
    t-interval across seeds, and ``seeds`` the number of replicates."""
    rows = [summary(df, radii, None) for df in frames]
    keys = list(rows[0])
    values = np.array([[row[k] for k in keys] for row in rows], dtype=float)
    mean, lo, hi = across_seeds(values, level if level is not None else 0.95)
    out: dict[str, float] = {}
    for k, m, a, b in zip(keys, mean, lo, hi, strict=True):
        out[k] = float(m)
        if level is not None and (k.startswith("r=") or k == "ACR"):
            out[f"{k} lo"], out[f"{k} hi"] = float(a), float(b)
    if level is not None:
        out["level"] = level
    out["seeds"] = len(frames)
    return out


def seed_table(table: pd.DataFrame, keys: Sequence[str], metrics: Sequence[str], level: float) -> pd.DataFrame:
    """One row per setting (``keys``) of a table with one row per trained replicate (a ``seed`` column):
    each metric's mean over seeds and its t-interval across seeds (``<metric> lo`` / ``<metric> hi``, NaN
    for one seed), ``seeds``, the number of replicates, and ``level``."""
    rows = []
    for setting, group in table.groupby(list(keys), dropna=False, sort=True):
        mean, lo, hi = across_seeds(group[list(metrics)].to_numpy(float), level)
        row = dict(zip(keys, setting if isinstance(setting, tuple) else (setting,), strict=True))
        for m, a, b, c in zip(metrics, mean, lo, hi, strict=True):
            row[m], row[f"{m} lo"], row[f"{m} hi"] = float(a), float(b), float(c)
        rows.append({**row, "seeds": len(group), "level": level})
    return pd.DataFrame(rows)


def paired_seed_difference(a: pd.DataFrame, b: pd.DataFrame, metric: str, level: float) -> dict[str, float]:
    """Setting A minus setting B, paired by ``seed`` (the same seed gives both the same initial weights and
    data order): the mean of the per-seed differences of ``metric``, its t-interval across seeds
    (``diff lo`` / ``diff hi``) and how many seeds A was above / below B. Refuses settings that share no seed."""
    merged = a[["seed", metric]].merge(b[["seed", metric]], on="seed", suffixes=(" A", " B"))
    if merged.empty:
        raise RsbenchError(f"no seed in common: A has {sorted(a['seed'])}, B has {sorted(b['seed'])}")
    diff = (merged[f"{metric} A"] - merged[f"{metric} B"]).to_numpy(float)
    mean, lo, hi = across_seeds(diff[:, None], level)
    return {"diff": float(mean[0]), "diff lo": float(lo[0]), "diff hi": float(hi[0]), "seeds": len(diff),
            "A>B / A<B": f"{int(np.sum(diff > 0))}/{int(np.sum(diff < 0))}", "level": level}
