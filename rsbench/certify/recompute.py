"""What a certificate's recomputation from a results row needs (``rsbench verify``, a resumed run).

A row records the votes or bounds its radius came from; each method's ``recompute(row, sequential)`` returns the
fields it recomputes with the same pure functions certify used, or raises :class:`NotRecomputable` when the row
does not record what its certificate needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rsbench.certify.bounds import clopper_pearson_lower
from rsbench.certify.sampling import BLOCK
from rsbench.certify.sequential import look_schedule


class NotRecomputable(Exception):
    """The row's certificate depends on something no row records."""


def votes_lower_bound(row: dict[str, Any], sequential: dict[str, Any] | None) -> float:
    """Cohen's bound from the row's votes: one-sided Clopper-Pearson of ``count`` in ``n_used`` at ``alpha``, or at
    alpha / #looks for a sequential run (its looks from the run's fingerprint)."""
    level = row["alpha"]
    if sequential:
        level /= len(look_schedule(int(sequential["n_min"]), row["n"], BLOCK))
    elif row["n_used"] != row["n"]:
        raise NotRecomputable("a sequential row without its run's fingerprint (its looks are unknown)")
    return clopper_pearson_lower(int(row["count"]), int(row["n_used"]), level)


def certified_radius(p_lower: float, radius: Callable[[float], float]) -> float:
    """Cohen's abstain rule: the radius at the top class's lower bound when it exceeds 1/2, else 0 (abstain)."""
    return radius(p_lower) if p_lower > 0.5 else 0.0


def hard_recompute(row: dict[str, Any], sequential: dict[str, Any] | None,
                   radius: Callable[[float], float]) -> dict[str, Any]:
    """A hard-vote row: its bound from its votes, then its radius (abstaining at p_lower <= 1/2)."""
    p = votes_lower_bound(row, sequential)
    return {"p_lower": p, "radius": certified_radius(p, radius)}
