"""Certificates: pure functions from estimated probabilities to a certified radius."""

from __future__ import annotations

import math

from scipy.stats import norm

from rsbench.errors import check_positive, require


def gaussian_l2_radius(p_lower: float, sigma: float) -> float:
    """Cohen et al. (2019), Theorem 1 with p_B = 1 - p_A: R = sigma * Phi^-1(p_A_lower).

    Valid in l2 for noise N(0, sigma^2 I) when p_A_lower is a lower bound on the probability of the
    top class. Returns 0 when p_A_lower <= 1/2 (the caller abstains there).
    """
    check_positive("sigma", sigma)
    require(0.0 <= p_lower <= 1.0 and not math.isnan(p_lower), f"p_lower={p_lower} is not a probability")
    if p_lower <= 0.5:
        return 0.0
    return float(sigma * norm.ppf(p_lower))
