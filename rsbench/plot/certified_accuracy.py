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
from rsbench.methods import method_from_params  # noqa: E402


@dataclass
class Curve:
    df: pd.DataFrame
    style: dict[str, Any] = field(default_factory=dict)  # matplotlib line keywords (color, linestyle, ...)

    @property
    def norm(self) -> str:
        """The norm of the curve's radii: the rows' ``norm`` column (Cohen et al.'s files, which have none: l2)."""
        return str(self.df["norm"].iloc[0]) if "norm" in self.df and len(self.df) else "l2"

    @property
    def cap(self) -> float | None:
        """The largest radius the rows' n and alpha can certify (every draw correct), or None where the method
        has no such cap or the rows do not say."""
        return radius_cap(self.df)


def radius_cap(df: pd.DataFrame) -> float | None:
    """The radius cap of n draws at alpha for the method the rows record (its ``radius_cap``), or None."""
    if not len(df) or not {"method", "n", "alpha"} <= set(df.columns):
        return None
    row = df.iloc[0].to_dict()
    try:
        method = method_from_params({**{k: _plain(v) for k, v in row.items()}, "name": str(row["method"])})
    except Exception:  # noqa: BLE001  (rows that do not rebuild their method: no cap is drawn)
        return None
    cap = getattr(method, "radius_cap", None)
    return cap(int(row["n"]), float(row["alpha"])) if cap is not None else None


def _plain(value: Any) -> Any:
    """A CSV cell as the value the row held (an int stays an int)."""
    if isinstance(value, float) and value.is_integer() and not isinstance(value, bool):
        return int(value)
    return value.item() if hasattr(value, "item") else value


LINESTYLES = ("-", "--", "-.", ":")


def plot_panels(panels: Mapping[str, Mapping[str, Curve]], out_stem: str | Path, title: str | None = None,
                max_radius: float | None = None, bands: float | None = None, points: int = 400) -> list[Path]:
    """:func:`draw_panels`, saved as ``out_stem``.png and .pdf."""
    return save_figure(draw_panels(panels, title, max_radius, bands, points), out_stem)


def draw_panels(panels: Mapping[str, Mapping[str, Curve]], title: str | None = None, max_radius: float | None = None,
                bands: float | None = None, points: int = 400) -> plt.Figure:
    """Each panel's curves: certified accuracy over a radius grid, what a reviewer needs on the figure.

    The radius axis names the curves' norm (each curve's in its legend entry when a panel mixes norms); the
    radius cap that n and alpha set is a dotted vertical line in the curve's colour; every curve gets its own
    colour and line style; curves over different numbers of points say how many; curves that crowd near the top
    get a y-axis ranged to them. ``bands``: a confidence level; each curve gets a shaded Clopper–Pearson band
    for the test-point sampling error at that level (:mod:`rsbench.analysis.intervals`), and the y-label says so."""
    frames = [c.df for curves in panels.values() for c in curves.values() if len(c.df)]
    top = max_radius or max([float(df["radius"].max()) for df in frames] + [0.5]) * 1.05
    grid = np.linspace(0.0, top, points)
    sizes = {len(df) for df in frames}
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.9), squeeze=False, sharey=True)
    lowest = 1.0
    for ax, (panel_title, curves) in zip(axes[0], panels.items(), strict=True):
        norms = {c.norm for c in curves.values()}
        seen: set[tuple[Any, Any]] = set()
        caps: dict[float, Any] = {}
        for label, curve in curves.items():
            if len(norms) > 1:
                label = f"{label} [{curve.norm}]"
            if len(sizes) > 1:  # curves over different points: say how many each has
                label = f"{label} ({len(curve.df)} pts)"
            replicates = curve.df.attrs.get("replicates")  # runs over several seeds: mean and t-interval
            if replicates:
                mean, lo, hi = across_seeds(np.array([certified_accuracy(df, grid) for df in replicates]),
                                            bands or 0.95)
                ci = np.clip(np.stack([lo, hi], axis=1), 0, 1)
            else:
                mean = certified_accuracy(curve.df, grid)
                ci = (certified_accuracy_intervals(curve.df["correct"].to_numpy(), curve.df["radius"].to_numpy(),
                                                   grid, bands) if bands is not None and len(curve.df) else None)
            style = {"lw": 1.6, **curve.style}
            (line,) = ax.plot(grid, mean, label=label, **style)
            key = (line.get_color(), line.get_linestyle())
            if key in seen:  # every curve distinguishable: a repeated colour and style gets the next style
                free = [s for s in LINESTYLES if (line.get_color(), s) not in seen]
                line.set_linestyle(free[0] if free else LINESTYLES[len(seen) % len(LINESTYLES)])
            seen.add((line.get_color(), line.get_linestyle()))
            cap = curve.cap
            below_cap = mean[grid < cap] if cap is not None and np.any(grid < cap) else mean  # past it: 0 by n
            lowest = min(lowest, float(np.min(below_cap)))
            if bands is not None and ci is not None:
                ax.fill_between(grid, ci[:, 0], ci[:, 1], color=line.get_color(), alpha=0.15, lw=0)
            if cap is not None and cap < top:
                caps.setdefault(round(cap, 6), (cap, line.get_color()))
        for cap, color in caps.values():  # where n and alpha stop every radius: not the model's doing
            ax.axvline(cap, color=color, linestyle=":", lw=1.0, alpha=0.8)
        if caps:
            ax.plot([], [], color="gray", linestyle=":", lw=1.0, label="radius cap of n, α (dotted)")
        ax.set_xlabel(f"radius ({norms.pop()})" if len(norms) == 1 else "radius (norm of each curve in [ ])")
        ax.set_xlim(0, top)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        if panel_title:
            ax.set_title(panel_title, fontsize=10)
    # curves that crowd near the top keep their own range (a 0-1 axis would squeeze them into a sliver)
    bottom = 0.0 if lowest < 0.5 else max(0.0, np.floor((lowest - 0.05) * 20) / 20)
    axes[0][0].set_ylim(bottom, 1.0 if bottom == 0 else 1.005)
    axes[0][0].set_ylabel("certified accuracy" + (f" ({100 * bands:g}% CI bands)" if bands is not None else "")
                          + (f", from {bottom:g}" if bottom > 0 else ""))
    if title:
        fit_suptitle(fig, title, fontsize=11)
    fig.tight_layout()
    return fig


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
