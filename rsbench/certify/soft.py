"""Soft smoothing (expected scores instead of votes): normalised scores, valid bounds, CERTIFY.

The smoothed score of class i is g_i(x) = E[g_i(x + eps)] with g = (1 - C p_min) softmax + p_min
(IDRS paper, Remark 2; p_min = 0 gives the plain softmax). Its certificates (Cohen/Salman for fixed
sigma, IDRS Theorem 3) need a lower bound on the top class and an upper bound on every other class.
They hold jointly at level alpha by a union bound: alpha/2 for the top class and alpha / (2 (C - 1))
for each of the C - 1 others; the runner-up bound is also capped by 1 - lower (the scores sum to one).
``bounds=point`` plugs in the sample means instead, as the IDRS paper's experiments do: NOT a valid
certificate (labelled sound=False by the methods).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rsbench.certify.bounds import empirical_bernstein_radius, hoeffding_radius
from rsbench.certify.seeding import PHASE_ESTIMATE, PHASE_SELECT
from rsbench.errors import RsbenchError, check_count, check_probability, require
from rsbench.noise.base import Noise

BOUNDS = ("bernstein", "hoeffding", "point")


def check_bounds(bounds: str, p_min: float) -> str:
    """Validate a bounds name and p_min; point estimates need p_min > 0 (else Phi^-1(1) = inf)."""
    if bounds not in BOUNDS:
        raise RsbenchError(f"method.bounds={bounds!r} is invalid; valid values: {', '.join(BOUNDS)}")
    require(0.0 <= p_min < 0.5, f"method.p_min={p_min} is invalid: it must lie in [0, 1/2)")
    require(bounds != "point" or p_min > 0, "method.bounds=point needs method.p_min > 0 (else radii can be inf)")
    return bounds


def normalized(p: float, p_min: float, num_classes: int) -> float:
    """(1 - C p_min) p + p_min: a softmax-mean probability mapped into [p_min, 1 - (C - 1) p_min]."""
    return (1.0 - num_classes * p_min) * p + p_min


def soft_class_bounds(mean: np.ndarray, var: np.ndarray | None, n: int, top: int, alpha: float,
                      bounds: str) -> tuple[float, np.ndarray]:
    """(lower bound on the top class's mean, upper bounds on each other class's mean, in class order).

    For i.i.d. values in [0, 1] with sample means ``mean`` (and unbiased sample variances ``var``, needed
    for ``bernstein``): jointly valid at level alpha by the union bound (alpha/2 for the top class,
    alpha / (2 (C - 1)) for each other). ``point`` returns the means themselves (not bounds).
    """
    check_count("n", n)
    check_probability("alpha", alpha)
    mean = np.asarray(mean, dtype=np.float64)
    others = np.array([c for c in range(len(mean)) if c != top])
    if bounds == "point":
        return float(mean[top]), mean[others]

    def half(c: int, a: float) -> float:
        return hoeffding_radius(n, a) if bounds == "hoeffding" else empirical_bernstein_radius(float(var[c]), n, a)

    lower = float(np.clip(mean[top] - half(top, alpha / 2), 0.0, 1.0))
    a_other = alpha / (2 * len(others))
    return lower, np.array([float(np.clip(mean[c] + half(c, a_other), 0.0, 1.0)) for c in others])


def soft_bounds(sums: np.ndarray, sumsq: np.ndarray, n: int, top: int, alpha: float, bounds: str,
                p_min: float = 0.0) -> tuple[float, float]:
    """(lower bound on g_top, upper bound on max_{i != top} g_i) from n soft-score draws, jointly at alpha.

    ``sums``/``sumsq``: per-class sums of the softmax scores and of their squares. Bounds are computed
    for the softmax means in [0, 1] (:func:`soft_class_bounds`), the runner-up bound is capped by
    1 - lower (scores sum to one), and both are mapped through :func:`normalized`, which is increasing,
    so they stay valid.
    """
    check_count("n", n)
    mean = np.asarray(sums, dtype=np.float64) / n
    var = (np.asarray(sumsq, dtype=np.float64) - n * mean ** 2) / max(n - 1, 1)
    lower, uppers = soft_class_bounds(mean, var, n, top, alpha, bounds)
    upper = float(uppers.max()) if bounds == "point" else min(1.0 - lower, float(uppers.max()))
    return normalized(lower, p_min, len(mean)), normalized(upper, p_min, len(mean))


@dataclass(frozen=True)
class SoftEstimate:
    top: int                # class with the highest mean score over the n0 selection draws
    p_lower: float          # lower bound on its smoothed (normalised) score
    p_runner_upper: float   # upper bound on every other class's smoothed score


def soft_certify(sampler, n0: int, n: int, alpha: float, bounds: str, p_min: float, temperature: float,
                 noise: Noise | None = None) -> SoftEstimate:
    """CERTIFY for soft smoothing: top class from n0 draws, bounds from n fresh draws (:func:`soft_bounds`).

    ``sampler`` is a :class:`~rsbench.certify.sampling.PointSampler`; ``noise`` overrides its noise
    (IDRS draws with the point's own sigma(x)).
    """
    sel = sampler.counts(n0, PHASE_SELECT, noise=noise, temperature=temperature)
    top = int(torch.argmax(sel))
    est = sampler.counts(n, PHASE_ESTIMATE, noise=noise, temperature=temperature, squares=True).numpy()
    lower, upper = soft_bounds(est[0], est[1], n, top, alpha, bounds, p_min)
    return SoftEstimate(top, lower, upper)
