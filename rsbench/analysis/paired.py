"""Paired comparison of two certify runs over the same test points (``rsbench compare A B``).

Both runs certified the same points, so their difference is estimated from per-point differences, which
is much sharper than two separate intervals. At each radius r, point i is certified-correct in run A
(a_i = correct and radius >= r) or not, likewise b_i:
- the difference in certified accuracy, mean(a) - mean(b), gets a paired percentile-bootstrap interval
  (the bootstrap of the per-point differences a_i - b_i: points resampled together, seeded), and
  McNemar's exact test on the discordant points (n_ab = #{a_i = 1, b_i = 0}, n_ba = #{a_i = 0, b_i = 1};
  two-sided binomial test of n_ab ~ Bin(n_ab + n_ba, 1/2));
- the difference in ACR, mean(radius_A * correct_A - radius_B * correct_B), the same paired bootstrap.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from rsbench.analysis.intervals import bootstrap_mean_interval, check_level
from rsbench.errors import RsbenchError


def align(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of both runs on their common test indices, in index order; refuses disjoint runs and runs
    whose labels disagree on a common index (then they are not over the same test points)."""
    common = np.intersect1d(a["idx"].to_numpy(), b["idx"].to_numpy())
    if not len(common):
        raise RsbenchError("the two runs have no test point in common: a paired comparison needs the same points")
    a = a.set_index("idx").loc[common]
    b = b.set_index("idx").loc[common]
    if "label" in a and "label" in b and not np.array_equal(a["label"].to_numpy(), b["label"].to_numpy()):
        raise RsbenchError("the two runs disagree on the labels of the same test indices: different datasets?")
    return a, b


def paired_comparison(a: pd.DataFrame, b: pd.DataFrame, radii: Sequence[float], level: float = 0.95,
                      draws: int = 2000, seed: int = 0, cap: float | None = None) -> pd.DataFrame:
    """One row per radius (and one for ACR): A, B, A - B, its paired interval, discordant counts, McNemar p.

    ``cap``: every radius is first clipped to min(radius, cap), e.g. to compare a file certified at
    N = 100,000 with a run at N = 10,000 on the radii both can certify (the largest at N, alpha:
    sigma Phi^-1(alpha^(1/N))). ``attrs`` then says how many correct points of each run lay beyond it.
    """
    level = check_level(level)
    if cap is not None and not cap > 0:
        raise RsbenchError(f"cap={cap} must be a positive radius")
    a, b = align(a, b)
    ca, cb = a["correct"].astype(bool).to_numpy(), b["correct"].astype(bool).to_numpy()
    ra, rb = a["radius"].to_numpy(dtype=float), b["radius"].to_numpy(dtype=float)
    beyond = None
    if cap is not None:
        beyond = (int(np.sum(ca & (ra > cap))), int(np.sum(cb & (rb > cap))))
        ra, rb = np.minimum(ra, cap), np.minimum(rb, cap)
    rows = []
    for r in radii:
        xa, xb = ca & (ra >= r), cb & (rb >= r)
        n_ab, n_ba = int(np.sum(xa & ~xb)), int(np.sum(~xa & xb))
        lo, hi = bootstrap_mean_interval(xa.astype(float) - xb.astype(float), level, draws, seed)
        p = binomtest(n_ab, n_ab + n_ba, 0.5).pvalue if n_ab + n_ba else 1.0
        rows.append({"measure": f"r={r:g}", "A": xa.mean(), "B": xb.mean(), "A-B": xa.mean() - xb.mean(),
                     "lo": lo, "hi": hi, "A only": n_ab, "B only": n_ba, "mcnemar_p": float(p)})
    d = ra * ca - rb * cb
    lo, hi = bootstrap_mean_interval(d, level, draws, seed)
    rows.append({"measure": "ACR", "A": float(np.mean(ra * ca)), "B": float(np.mean(rb * cb)), "A-B": float(d.mean()),
                 "lo": lo, "hi": hi, "A only": None, "B only": None, "mcnemar_p": None})
    out = pd.DataFrame(rows)
    out.attrs.update(points=len(a), level=level, cap=cap, beyond_cap=beyond)
    return out
