"""Confidence bounds for a binomial proportion and Cohen et al.'s abstain test (pure functions)."""

from __future__ import annotations

import math
from collections.abc import Callable

from scipy.special import betaincinv
from scipy.stats import binomtest

from rsbench.errors import check_count, check_probability, require


def _check(k: int, n: int, alpha: float) -> None:
    check_count("n", n)
    require(0 <= k <= n, f"count {k} is outside [0, n={n}]")
    check_probability("alpha", alpha)


def clopper_pearson_lower(k: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson lower bound on p from k successes in n trials.

    p_lower = Beta^-1(alpha; k, n - k + 1), and 0 when k = 0. This equals the lower end of the
    two-sided beta interval at level 2 * alpha, which is what Cohen et al.'s CERTIFY uses. The beta quantile
    comes from ``scipy.special.betaincinv`` (what ``scipy.stats.beta.ppf`` computes, without its ~80 us of
    argument handling per call).
    """
    _check(k, n, alpha)
    return 0.0 if k == 0 else float(betaincinv(k, n - k + 1, alpha))


def clopper_pearson_upper(k: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson upper bound: Beta^-1(1 - alpha; k + 1, n - k), 1 when k = n."""
    _check(k, n, alpha)
    return 1.0 if k == n else float(betaincinv(k + 1, n - k, 1.0 - alpha))


def top_two_pvalue(n_a: int, n_b: int) -> float:
    """Two-sided binomial test p-value of n_a vs n_b under p = 1/2 (Cohen et al.'s PREDICT)."""
    if n_a + n_b == 0:
        return 1.0
    return float(binomtest(int(n_a), int(n_a + n_b), 0.5).pvalue)


def max_certifiable_p(n: int, alpha: float) -> float:
    """The largest Clopper-Pearson lower bound n samples can give (all n successes): alpha^(1/n)."""
    return clopper_pearson_lower(n, n, alpha)


def n_to_reach(cap_at: Callable[[int], float], radius: float, n: int, n_max: int = 10**12) -> int | None:
    """The smallest sample count m >= n with ``cap_at(m) >= radius`` (``cap_at``: a method's largest certifiable
    radius from m draws, non-decreasing in m), by doubling then bisection; None past ``n_max``."""
    hi = max(int(n), 1)
    while cap_at(hi) < radius:
        if hi > n_max:
            return None
        hi *= 2
    lo = max(hi // 2, int(n))
    while lo < hi:
        mid = (lo + hi) // 2
        if cap_at(mid) >= radius:
            hi = mid
        else:
            lo = mid + 1
    return hi


def hoeffding_radius(n: int, alpha: float) -> float:
    """Hoeffding half-width for the mean of n i.i.d. values in [0, 1]: sqrt(log(1/alpha) / (2n)).

    P(mean - mu >= t) <= exp(-2 n t^2), so mean - t is a one-sided (1 - alpha) lower bound on mu
    (and mean + t an upper bound). Used for soft smoothing, where each draw contributes a softmax score.
    """
    check_count("n", n)
    check_probability("alpha", alpha)
    return math.sqrt(math.log(1.0 / alpha) / (2.0 * n))


def hoeffding_lower(mean: float, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) lower bound on E[X] for X in [0, 1] from the mean of n draws, clipped to [0, 1]."""
    return min(1.0, max(0.0, mean - hoeffding_radius(n, alpha)))


def hoeffding_upper(mean: float, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) upper bound on E[X] for X in [0, 1] from the mean of n draws, clipped to [0, 1]."""
    return min(1.0, max(0.0, mean + hoeffding_radius(n, alpha)))


def empirical_bernstein_radius(variance: float, n: int, alpha: float) -> float:
    """Maurer & Pontil (2009), Thm. 4: half-width sqrt(2 V ln(2/alpha) / n) + 7 ln(2/alpha) / (3 (n - 1)).

    For n i.i.d. values in [0, 1] with unbiased sample variance V, mean - half-width is a one-sided
    (1 - alpha) lower bound on the expectation (and mean + half-width an upper bound). Much tighter than
    Hoeffding when the values barely vary (soft scores of a confident classifier).
    """
    require(n >= 2, f"empirical Bernstein needs n >= 2 samples, got {n}")
    check_probability("alpha", alpha)
    require(variance >= -1e-12 and not math.isnan(variance), f"variance={variance} is invalid")
    log_term = math.log(2.0 / alpha)
    return math.sqrt(2.0 * max(variance, 0.0) * log_term / n) + 7.0 * log_term / (3.0 * (n - 1))
