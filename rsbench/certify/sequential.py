"""Sequential certification: stop drawing samples as soon as the outcome is decided.

Looks happen on a fixed geometric schedule n_1 < n_2 < ... < n_J = n_max (doubling from n_min). At
look j, with k_j successes among the first n_j draws, the one-sided Clopper-Pearson bounds are taken at
alpha / J. By the union bound over the J looks, with probability >= 1 - alpha *every* look's lower
bound is below the true p, so whichever look we stop at (optional stopping) reports a valid bound and
the radius computed from it is a certificate at level alpha.

Stop early when the lower bound already reaches ``p_stop`` (the probability that certifies the radius
of interest, e.g. Phi(max_radius / sigma) for Gaussian RS), or when the upper bound is <= 1/2 (the
point will abstain).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rsbench.certify.bounds import clopper_pearson_lower, clopper_pearson_upper
from rsbench.errors import check_count, require

HARD_VOTES_ONLY = ("certify.sequential=true is implemented for the hard-vote methods (gaussian, mog, dsmooth, "
                   "laplace)")


def look_schedule(n_min: int, n_max: int, block: int = 1) -> list[int]:
    """n_min, 2 n_min, 4 n_min, ... (multiples of ``block``), ending exactly at n_max."""
    check_count("sequential n_min", n_min)
    check_count("n", n_max)
    require(n_min % block == 0, f"certify.seq_n_min={n_min} must be a multiple of {block}")
    looks, n = [], n_min
    while n < n_max:
        looks.append(n)
        n *= 2
    return [*looks, n_max]


@dataclass(frozen=True)
class SequentialSpec:
    """``certify.sequential=true``: looks from ``n_min`` doubling to n; stop once ``max_radius`` is certified."""

    n_min: int
    max_radius: float


@dataclass(frozen=True)
class SequentialResult:
    successes: int
    n_used: int     # draws consumed
    looks: int      # looks taken
    p_lower: float  # Clopper-Pearson lower bound at alpha / J at the stopping look
    decided: str    # "certified" (reached p_stop), "abstain" (upper <= 1/2) or "exhausted" (used n_max)


def sequential_lower_bound(successes_in: Callable[[int, int], int], n_min: int, n_max: int, alpha: float,
                           p_stop: float, block: int = 1) -> SequentialResult:
    """Run the looks; ``successes_in(a, b)`` returns the successes among draws a..b-1 (drawn once each)."""
    looks = look_schedule(n_min, n_max, block)
    level = alpha / len(looks)
    k, drawn = 0, 0
    for j, n_j in enumerate(looks, start=1):
        k += successes_in(drawn, n_j)
        drawn = n_j
        lower = clopper_pearson_lower(k, n_j, level)
        if lower >= p_stop:
            return SequentialResult(k, n_j, j, lower, "certified")
        if clopper_pearson_upper(k, n_j, level) <= 0.5:
            return SequentialResult(k, n_j, j, lower, "abstain")
    return SequentialResult(k, drawn, len(looks), lower, "exhausted")


def p_for_radius(radius_of: Callable[[float], float], radius: float, tol: float = 1e-15) -> float:
    """The least p in (1/2, 1) with ``radius_of(p) >= radius`` (``radius_of`` increasing), rounded up, by
    bisection: the ``p_stop`` of a method whose certificate is a function of p_A_lower alone. Above 1 (never
    reached) when no p < 1 certifies ``radius``."""
    lo, hi = 0.5, 1.0 - 1e-16
    if radius_of(hi) < radius:
        return 2.0
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if radius_of(mid) < radius else (lo, mid)
    return hi


@dataclass(frozen=True)
class SequentialComponents:
    successes: list[int]  # per component, at the stopping look
    n_used: list[int]     # per component draws consumed
    looks: int
    p_lower: list[float]  # per component Clopper-Pearson lower bounds at alpha / (K J)
    decided: str


def sequential_component_bounds(successes_in: Callable[[int, int, int], int], allocations: Sequence[Sequence[int]],
                                alpha: float, weights: Sequence[float], certified: Callable[[list[float]], bool]
                                ) -> SequentialComponents:
    """Sequential looks over K independent sample streams (one per mixture component).

    ``allocations[j][k]`` is component k's draws at look j (non-decreasing in j); ``successes_in(k, a, b)``
    the top-class successes among component k's draws a..b-1. Every bound is Clopper-Pearson at
    alpha / (K J): by the union bound over K components and J looks, with probability >= 1 - alpha every
    bound at every look holds, so the look we stop at gives a certificate at level alpha. Stop once
    ``certified(lower bounds)`` holds, or abstain once sum_k w_k upper_k <= 1/2 (no radius is possible).
    """
    K, J = len(weights), len(allocations)
    level = alpha / (K * J)
    k_succ, drawn = [0] * K, [0] * K
    for j, alloc in enumerate(allocations, start=1):
        for k in range(K):
            k_succ[k] += successes_in(k, drawn[k], alloc[k])
            drawn[k] = alloc[k]
        lower = [clopper_pearson_lower(k_succ[k], drawn[k], level) for k in range(K)]
        if certified(lower):
            return SequentialComponents(list(k_succ), list(drawn), j, lower, "certified")
        if float(np.dot(weights, lower)) <= 0.5:  # else the upper bounds (>= lower) cannot show abstention
            upper = [clopper_pearson_upper(k_succ[k], drawn[k], level) for k in range(K)]
            if float(np.dot(weights, upper)) <= 0.5:
                return SequentialComponents(list(k_succ), list(drawn), j, lower, "abstain")
    return SequentialComponents(list(k_succ), list(drawn), J, lower, "exhausted")
