"""Certified accuracy and average certified radius (pure functions over a certify table)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from rsbench.analysis.intervals import bootstrap_mean_interval, certified_accuracy_intervals

DEFAULT_RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)


def certified_accuracy(df: pd.DataFrame, radii: Sequence[float]) -> np.ndarray:
    """Fraction of rows with ``correct`` and ``radius >= r``, for each r in ``radii``."""
    correct = df["correct"].astype(bool).to_numpy()
    radius = df["radius"].to_numpy(dtype=float)
    return np.array([float(np.mean(correct & (radius >= r))) if len(df) else float("nan") for r in radii])


def average_certified_radius(df: pd.DataFrame) -> float:
    """ACR = mean over all rows of radius * correct (abstentions and errors count as 0)."""
    if not len(df):
        return float("nan")
    return float(np.mean(df["radius"].to_numpy(dtype=float) * df["correct"].astype(bool).to_numpy()))


def summary(df: pd.DataFrame, radii: Sequence[float] = DEFAULT_RADII, level: float | None = 0.95) -> dict[str, float]:
    """One row of the summary table: points, certified accuracy at ``radii``, ACR, abstain rate, time.

    With ``level``, each certified accuracy and the ACR also get ``<column> lo`` / ``<column> hi``: the
    test-point sampling interval at that level (:mod:`rsbench.analysis.intervals`), and ``level`` itself.
    """
    out: dict[str, float] = {"points": len(df)}
    accs = certified_accuracy(df, radii)
    cis = (certified_accuracy_intervals(df["correct"].to_numpy(), df["radius"].to_numpy(), radii, level)
           if level is not None else None)
    for k, (r, acc) in enumerate(zip(radii, accs, strict=True)):
        out[f"r={r:g}"] = acc
        if cis is not None:
            out[f"r={r:g} lo"], out[f"r={r:g} hi"] = cis[k]
    out["ACR"] = average_certified_radius(df)
    if level is not None:
        values = df["radius"].to_numpy(dtype=float) * df["correct"].astype(bool).to_numpy()
        out["ACR lo"], out["ACR hi"] = bootstrap_mean_interval(values, level)
    out["abstain"] = float(np.mean(df["predict"].to_numpy() < 0)) if len(df) else float("nan")
    if "attack_inside" in df:
        out["attacked"] = attacked_certified_accuracy(df)
    out["s/point"] = float(df["time_s"].mean()) if len(df) else float("nan")
    if level is not None:
        out["level"] = level
    return out


def attacked_certified_accuracy(df: pd.DataFrame) -> float:
    """DSmooth's attacked certified accuracy: fraction of rows whose actual attack perturbation lies inside
    the certified region (``attack_inside``) and whose certified prediction is correct."""
    if not len(df):
        return float("nan")
    return float(np.mean(df["correct"].astype(bool).to_numpy() & df["attack_inside"].astype(bool).to_numpy()))


def mark_unsound(label: str, df: pd.DataFrame) -> str:
    """``label`` plus " (unsound)" when any row's radius is not a proof (``sound`` column False)."""
    if "sound" not in df or not len(df):
        return label
    sound = df["sound"].astype(str).str.lower().isin(("true", "1", "1.0"))
    if sound.all() or label.endswith("(unsound)"):
        return label
    return f"{label} (unsound)" if not sound.any() else f"{label} ({int((~sound).sum())} rows unsound)"


def summary_table(runs: dict[str, pd.DataFrame], radii: Sequence[float] = DEFAULT_RADII,
                  level: float | None = 0.95) -> pd.DataFrame:
    """Summary rows indexed by run label (with interval columns at ``level`` unless it is None)."""
    return pd.DataFrame({label: summary(df, radii, level) for label, df in runs.items()}).T


def _bounds(table: pd.DataFrame) -> list[str]:
    """The columns that have ``lo`` / ``hi`` interval columns beside them."""
    return [c for c in table.columns if f"{c} lo" in table.columns and f"{c} hi" in table.columns]


def _values(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if not str(c).endswith((" lo", " hi")) and c != "level"]


def format_table(table: pd.DataFrame, digits: int = 3) -> str:
    """The summary table as aligned text for the terminal; with intervals, each run's row is followed by
    a row of ``lo-hi`` intervals labelled with the level (e.g. "  95% CI")."""
    cols, with_ci = _values(table), _bounds(table)
    rows, index = [], []
    for label, row in table.iterrows():
        rows.append([_cell(c, row[c], digits) for c in cols])
        index.append(str(label))
        if with_ci:
            rows.append([f"{row[c + ' lo']:.2f}-{row[c + ' hi']:.2f}" if c in with_ci and not np.isnan(row[c + " lo"])
                         else "" for c in cols])
            across = "seeds" in row and not np.isnan(row["seeds"])
            index.append(f"  {100 * float(row['level']):g}% CI{' across seeds' if across else ''}")
    return pd.DataFrame(rows, index=index, columns=cols).to_string()


def _cell(column: str, value: object, digits: int) -> str:
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        if np.isnan(value):
            return ""
        return f"{int(value)}" if column in ("points", "seeds", "seed") else f"{value:.{digits}f}"
    return "" if value is None else str(value)


def to_markdown(table: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency); intervals as ``value [lo, hi]`` cells and
    the level in the header."""
    cols, with_ci = _values(table), _bounds(table)
    level = f" ({100 * float(table['level'].iloc[0]):g}% CI)" if with_ci and len(table) else ""
    lines = ["| " + " | ".join(["run", *(f"{c}{level}" if c in with_ci else c for c in cols)]) + " |",
             "|" + "---|" * (len(cols) + 1)]
    for label, row in table.iterrows():
        cells = [str(label)] + [_cell(c, row[c], digits) + (f" [{row[c + ' lo']:.{digits}f}, "
                                                             f"{row[c + ' hi']:.{digits}f}]" if c in with_ci else "")
                                for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
