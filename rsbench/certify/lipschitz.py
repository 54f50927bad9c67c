"""Lipschitz constant of input-dependent RS (input_dependent_rs_lipschitz_sigma.md, Lemma 3 and eq. (5)).

For zero-mean isotropic smoothing N(0, sigma(x)^2 I_d) with sigma >= sigma_min and Lip(sigma) = l, and
smoothed scores in [p_min, 1 - p_min], x -> Phi^-1(g_i(x)) is L-Lipschitz with (eq. 5)
    L = (1 / sigma_min) * (1 + 2 l R(p_min)),
    R(p) = eps0(p) f_chi2_d(eps0(p)) / phi(Phi^-1(p)),   eps0(p) = F_chi2_d^-1(1 - p),
valid when R is monotone decreasing on [p_min, 1 - p_min] (Lemma 3), which is checked numerically.
Everything is computed in log space (chi2.isf / chi2.logpdf / norm.logpdf), so d = 150,528 works too.
The certified radius of Theorem 3 is then 1/(2L) (Phi^-1(p_y) - Phi^-1(p_y')).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import chi2, norm

from rsbench.errors import RsbenchError, check_count, check_positive, require


def chi2_ratio(p: float | np.ndarray, d: int) -> float | np.ndarray:
    """R(p) = eps0(p) f_chi2_d(eps0(p)) / phi(Phi^-1(p)) with eps0(p) = F_chi2_d^-1(1 - p) (Lemma 3)."""
    eps0 = chi2.isf(p, d)
    return np.exp(np.log(eps0) + chi2.logpdf(eps0, d) - norm.logpdf(norm.ppf(p)))


def check_lemma3(d: int, p_min: float, points: int = 2000) -> None:
    """Refuse (RsbenchError) unless R is numerically monotone decreasing on [p_min, 1 - p_min]."""
    check_count("d", d)
    require(0.0 < p_min < 0.5, f"p_min={p_min} is invalid: it must lie in (0, 1/2)")
    half = np.logspace(math.log10(p_min), math.log10(0.5), points)
    grid = np.concatenate([half, 1.0 - half[::-1][1:]])
    r = chi2_ratio(grid, d)
    bad = np.flatnonzero(~np.isfinite(r[:-1]) | (np.diff(r) > 1e-12 * np.abs(r[:-1])))
    if len(bad):
        raise RsbenchError(f"Lemma 3 fails for d={d}, p_min={p_min:g}: R(p) is not decreasing near "
                           f"p={grid[bad[0]]:.3g}; choose a larger p_min")


def idrs_lipschitz(sigma_min: float, lip_sigma: float, d: int, p_min: float) -> float:
    """Eq. (5): L = (1/sigma_min)(1 + 2 Lip(sigma) R(p_min)), after checking Lemma 3's monotonicity.

    With Lip(sigma) = 0 it is 1/sigma (standard RS). The paper's MNIST setting (sigma_min 0.65, Lip 0.5,
    d 784, p_min 1e-7) gives L = 34.71.
    """
    check_positive("sigma_min", sigma_min)
    require(lip_sigma >= 0 and math.isfinite(lip_sigma), f"Lip(sigma)={lip_sigma} must be a finite number >= 0")
    check_lemma3(d, p_min)
    return float((1.0 / sigma_min) * (1.0 + 2.0 * lip_sigma * chi2_ratio(p_min, d)))
