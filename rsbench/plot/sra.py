"""SRA paper figures: robustness curves (Fig. 4-7 panels) and hyperparameter heatmaps (Fig. 2, 3)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from rsbench.plot.certified_accuracy import fit_suptitle, save_figure  # noqa: E402

PANELS = (("margin_cr", "margin certified radius (l2)", "fraction certified"),
          ("rs_cr", "RS certified radius (l2)", "fraction certified"),
          ("noise_accuracy", "Gaussian noise std sigma_x", "accuracy"),
          ("linear_corruption", "signal fraction alpha", "accuracy"))


def plot_robustness(runs: Mapping[str, pd.DataFrame], out_stem: str | Path, title: str | None = None) -> list[Path]:
    """Four panels (Fig. 4 layout): margin CR, RS CR, noise accuracy, linear corruption; one line per run."""
    fig, axes = plt.subplots(1, 4, figsize=(18, 3.8))
    for ax, (curve, xlabel, ylabel) in zip(axes, PANELS, strict=True):
        for label, df in runs.items():
            part = df[df["curve"] == curve]
            ax.plot(part["x"], part["value"], label=label, lw=1.5)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        if curve == "linear_corruption":
            ax.invert_xaxis()
    axes[0].legend(fontsize=7)
    if title:
        fit_suptitle(fig, title)
    fig.tight_layout()
    return save_figure(fig, out_stem)


def plot_heatmaps(table: pd.DataFrame, metrics: Mapping[str, str], out_stem: str | Path,
                  title: str | None = None) -> list[Path]:
    """Fig. 2/3: one row per loss, one column per metric; cells over (var_x, d)."""
    losses = sorted(table["loss"].unique())
    fig, axes = plt.subplots(len(losses), len(metrics), figsize=(4.2 * len(metrics), 3.4 * len(losses)),
                             squeeze=False)
    for j, (metric, name) in enumerate(metrics.items()):
        vmin, vmax = table[metric].min(), table[metric].max()
        for i, loss in enumerate(losses):
            grid = table[table["loss"] == loss].pivot_table(index="d", columns="var_x", values=metric)
            ax = axes[i][j]
            im = ax.imshow(grid.to_numpy(), origin="lower", aspect="auto", vmin=vmin, vmax=vmax, cmap="magma")
            ax.set_xticks(range(len(grid.columns)), [f"{v:g}" for v in grid.columns], fontsize=7)
            ax.set_yticks(range(len(grid.index)), [f"{v:g}" for v in grid.index], fontsize=7)
            ax.set_xlabel("sigma_x^2")
            ax.set_ylabel("d")
            ax.set_title(f"{loss}: {name}", fontsize=9)
            for (a, b), v in np.ndenumerate(grid.to_numpy()):
                ax.text(b, a, f"{v:.3g}", ha="center", va="center", fontsize=6, color="cyan")
            fig.colorbar(im, ax=ax)
    if title:
        fit_suptitle(fig, title)
    fig.tight_layout()
    return save_figure(fig, out_stem)
