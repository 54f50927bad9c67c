"""Certified accuracy vs radius: one panel per group of runs, one curve per run, saved as PNG and PDF."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from rsbench.analysis.curves import certified_accuracy  # noqa: E402
from rsbench.analysis.intervals import certified_accuracy_intervals  # noqa: E402
from rsbench.analysis.seeds import across_seeds  # noqa: E402


@dataclass
class Curve:
    df: pd.DataFrame
    style: dict[str, Any] = field(default_factory=dict)  # matplotlib line keywords (color, linestyle, ...)


def plot_panels(panels: Mapping[str, Mapping[str, Curve]], out_stem: str | Path, title: str | None = None,
                max_radius: float | None = None, bands: float | None = None, points: int = 400) -> list[Path]:
    """Draw each panel's curves (certified accuracy over a radius grid); save ``out_stem``.png and .pdf.

    ``bands``: a confidence level; each curve gets a shaded Clopper–Pearson band for the test-point
    sampling error at that level (:mod:`rsbench.analysis.intervals`), and the y-label says so."""
    frames = [c.df for curves in panels.values() for c in curves.values() if len(c.df)]
    top = max_radius or max([float(df["radius"].max()) for df in frames] + [0.5]) * 1.05
    grid = np.linspace(0.0, top, points)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.9), squeeze=False, sharey=True)
    for ax, (panel_title, curves) in zip(axes[0], panels.items(), strict=True):
        for label, curve in curves.items():
            replicates = curve.df.attrs.get("replicates")  # runs over several seeds: mean and t-interval
            if replicates:
                mean, lo, hi = across_seeds(np.array([certified_accuracy(df, grid) for df in replicates]),
                                            bands or 0.95)
                ci = np.clip(np.stack([lo, hi], axis=1), 0, 1)
            else:
                mean = certified_accuracy(curve.df, grid)
                ci = (certified_accuracy_intervals(curve.df["correct"].to_numpy(), curve.df["radius"].to_numpy(),
                                                   grid, bands) if bands is not None and len(curve.df) else None)
            (line,) = ax.plot(grid, mean, label=label, **{"lw": 1.6, **curve.style})
            if bands is not None and ci is not None:
                ax.fill_between(grid, ci[:, 0], ci[:, 1], color=line.get_color(), alpha=0.15, lw=0)
        ax.set_xlabel("radius (l2)")
        ax.set_xlim(0, top)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        if panel_title:
            ax.set_title(panel_title, fontsize=10)
    axes[0][0].set_ylabel("certified accuracy" + (f" ({100 * bands:g}% CI bands)" if bands is not None else ""))
    if title:
        fit_suptitle(fig, title, fontsize=11)
    fig.tight_layout()
    return save_figure(fig, out_stem)


def fit_suptitle(fig: plt.Figure, title: str, fontsize: float = 12, margin: float = 0.96) -> None:
    """Set the figure title, wrapped at word boundaries until every line fits ``margin`` of the figure's width.

    The width is measured with the figure's renderer, so the wrap holds for any font and figure size."""
    text = fig.suptitle(title, fontsize=fontsize)
    renderer = fig.canvas.get_renderer()
    limit = margin * fig.bbox.width
    chars = len(title)
    while (width := text.get_window_extent(renderer).width) > limit and chars > 10:
        chars = max(10, min(chars - 1, int(chars * limit / width)))
        text.set_text(textwrap.fill(title, chars))


def save_figure(fig: plt.Figure, out_stem: str | Path) -> list[Path]:
    """Write ``out_stem``.png and .pdf (creating the folder) and close the figure."""
    out_stem = Path(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [out_stem.with_suffix(".png"), out_stem.with_suffix(".pdf")]
    for p in paths:
        fig.savefig(p, dpi=150)
    plt.close(fig)
    return paths


def plot_certified_accuracy(runs: Mapping[str, pd.DataFrame], out_stem: str | Path, title: str | None = None,
                            max_radius: float | None = None, bands: float | None = None) -> list[Path]:
    """One panel, one curve per run (Cohen et al.'s figure style)."""
    return plot_panels({"": {label: Curve(df) for label, df in runs.items()}}, out_stem, title, max_radius, bands)
