"""Confidence intervals for what a certify table estimates about the test distribution.

A certify run reports, over m test points, the certified accuracy at radius r (the fraction of points
certified correct with radius >= r) and the ACR (mean of radius * correct). Both are estimates of the
same quantities on the whole data distribution; their error from the choice of test points is what these
intervals give. The Monte Carlo error is not here: each radius is already a lower bound that holds with
probability >= 1 - alpha, so it is not counted twice.

- Certified accuracy: k of m points, an exact two-sided Clopper–Pearson interval
  [B(q; k, m - k + 1), B(1 - q; k + 1, m - k)] with q = (1 - level) / 2 (B the beta quantile).
- ACR: a percentile bootstrap of the mean (``draws`` resamples of the m values, seeded, so the same
  table gives the same interval).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import beta

from rsbench.errors import RsbenchError


def check_level(level: float | None) -> float | None:
    """A confidence level strictly between 0 and 1 (None, "no intervals", passes through)."""
    if level is None:
        return None
    level = float(level)
    if not 0.0 < level < 1.0:
        raise RsbenchError(f"ci_level={level} is invalid: it must lie strictly between 0 and 1 (e.g. 0.95)")
    return level


def _clopper_pearson(k: np.ndarray, m: int, level: float) -> np.ndarray:
    """(len(k), 2) exact two-sided intervals for k successes (an array) in m trials."""
    k = np.asarray(k)
    q = (1.0 - check_level(level)) / 2.0
    lo = np.where(k > 0, beta.ppf(q, np.maximum(k, 1), m - k + 1), 0.0)
    hi = np.where(k < m, beta.ppf(1.0 - q, k + 1, np.maximum(m - k, 1)), 1.0)
    return np.stack([lo, hi], axis=1)


def clopper_pearson_interval(k: int, m: int, level: float = 0.95) -> tuple[float, float]:
    """Exact two-sided interval for a binomial proportion from k successes in m trials (NaN if m = 0)."""
    if m <= 0:
        return float("nan"), float("nan")
    lo, hi = _clopper_pearson(np.array([k]), m, level)[0]
    return float(lo), float(hi)


def certified_accuracy_intervals(correct: np.ndarray, radius: np.ndarray, radii: Sequence[float],
                                 level: float = 0.95) -> np.ndarray:
    """(len(radii), 2) array of Clopper–Pearson intervals on the certified accuracy at each radius."""
    ok = np.asarray(correct, dtype=bool)
    rad = np.sort(np.asarray(radius, dtype=float)[ok])
    if not len(ok):
        return np.full((len(radii), 2), np.nan)
    k = len(rad) - np.searchsorted(rad, np.asarray(radii, dtype=float), side="left")  # correct with radius >= r
    return _clopper_pearson(k, len(ok), level)


def bootstrap_mean_interval(values: np.ndarray, level: float = 0.95, draws: int = 2000,
                            seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval for the mean of ``values`` (seeded: reproducible); NaN if empty."""
    v = np.asarray(values, dtype=float)
    if not len(v):
        return float("nan"), float("nan")
    q = (1.0 - check_level(level)) / 2.0
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // len(v))  # resample in chunks: memory stays small for 10,000-point tables
    means = np.concatenate([v[rng.integers(0, len(v), size=(min(chunk, draws - i), len(v)))].mean(axis=1)
                            for i in range(0, draws, chunk)])
    return float(np.quantile(means, q)), float(np.quantile(means, 1.0 - q))
