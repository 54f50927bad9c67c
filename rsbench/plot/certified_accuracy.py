"""Certified accuracy vs radius, one curve per run (Cohen et al.'s Figure style)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from rsbench.analysis.curves import certified_accuracy  # noqa: E402


def plot_certified_accuracy(runs: dict[str, pd.DataFrame], out_stem: str | Path, title: str | None = None,
                            max_radius: float | None = None, points: int = 400) -> list[Path]:
    """Draw certified accuracy over a radius grid for each run; save ``out_stem``.png and .pdf."""
    top = max_radius or max([float(df["radius"].max()) for df in runs.values() if len(df)] + [0.5]) * 1.05
    grid = np.linspace(0.0, top, points)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for label, df in runs.items():
        ax.plot(grid, certified_accuracy(df, grid), label=label, lw=1.8)
    ax.set_xlabel("radius")
    ax.set_ylabel("certified accuracy")
    ax.set_xlim(0, top)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    out_stem = Path(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [out_stem.with_suffix(".png"), out_stem.with_suffix(".pdf")]
    for p in paths:
        fig.savefig(p, dpi=150)
    plt.close(fig)
    return paths
