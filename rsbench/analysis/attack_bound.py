"""The empirical upper bound on certified accuracy: a certify run against attacked PREDICT runs.

An attack with ||x_adv - x||_2 <= eps that PREDICT then classifies wrongly (or abstains on) shows that the
smoothed classifier is not robust at x at radius eps, so on the same test points

    certified accuracy at radius eps  <=  accuracy under the attack at eps   (up to the estimates' error).

Both sides are proportions over the common points; ``violated`` flags a certified accuracy whose lower
Clopper-Pearson bound lies above the attacked accuracy's upper bound: beyond both intervals, a bug.
"""

from __future__ import annotations

import pandas as pd

from rsbench.analysis.intervals import clopper_pearson_interval
from rsbench.analysis.paired import align


def attack_bound(certified: pd.DataFrame, attacked: dict[float, pd.DataFrame], level: float = 0.95) -> pd.DataFrame:
    """One row per attack eps: points, certified accuracy at eps, attacked accuracy, their intervals, violated."""
    rows = []
    for eps, df in sorted(attacked.items()):
        cert, att = align(certified, df)
        m = len(cert)
        k_cert = int((cert["correct"].astype(bool) & (cert["radius"].astype(float) >= eps)).sum())
        k_att = int(att["correct"].astype(bool).sum())
        c_lo, c_hi = clopper_pearson_interval(k_cert, m, level)
        a_lo, a_hi = clopper_pearson_interval(k_att, m, level)
        rows.append({"eps": eps, "points": m, "certified": k_cert / m if m else float("nan"),
                     "certified_lo": c_lo, "certified_hi": c_hi,
                     "attacked": k_att / m if m else float("nan"), "attacked_lo": a_lo, "attacked_hi": a_hi,
                     "violated": bool(m and c_lo > a_hi)})
    return pd.DataFrame(rows)
