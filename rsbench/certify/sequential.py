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

from collections.abc import Callable
from dataclasses import dataclass

from rsbench.certify.bounds import clopper_pearson_lower, clopper_pearson_upper
from rsbench.errors import check_count, require


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
