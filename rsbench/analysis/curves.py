"""Certified accuracy and average certified radius (pure functions over a certify table)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

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


def summary(df: pd.DataFrame, radii: Sequence[float] = DEFAULT_RADII) -> dict[str, float]:
    """One row of the summary table: points, certified accuracy at ``radii``, ACR, abstain rate, time."""
    out: dict[str, float] = {"points": len(df)}
    for r, acc in zip(radii, certified_accuracy(df, radii), strict=True):
        out[f"r={r:g}"] = acc
    out["ACR"] = average_certified_radius(df)
    out["abstain"] = float(np.mean(df["predict"].to_numpy() < 0)) if len(df) else float("nan")
    if "attack_inside" in df:
        out["attacked"] = attacked_certified_accuracy(df)
    out["s/point"] = float(df["time_s"].mean()) if len(df) else float("nan")
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


def summary_table(runs: dict[str, pd.DataFrame], radii: Sequence[float] = DEFAULT_RADII) -> pd.DataFrame:
    """Summary rows indexed by run label."""
    return pd.DataFrame({label: summary(df, radii) for label, df in runs.items()}).T


def format_table(table: pd.DataFrame, digits: int = 3) -> str:
    """The summary table as aligned text for the terminal."""
    fmt = {c: (lambda v: f"{int(v)}") if c == "points" else (lambda v, d=digits: f"{v:.{d}f}")
           for c in table.columns}
    return table.to_string(formatters=fmt)


def _cell(column: str, value: object, digits: int) -> str:
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return f"{int(value)}" if column == "points" else f"{value:.{digits}f}"
    return "" if value is None else str(value)


def to_markdown(table: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency)."""
    cols = ["run", *table.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for label, row in table.iterrows():
        cells = [str(label)] + [_cell(c, v, digits) for c, v in row.items()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
