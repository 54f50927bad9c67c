"""Figure kinds for ``rsbench plot figure=<name>``: one function per paper figure.

Each takes the runs (label -> certify table) and writes ``out_stem``.png/.pdf.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from rsbench.analysis.curves import attacked_certified_accuracy
from rsbench.errors import require
from rsbench.plot.certified_accuracy import Curve, plot_certified_accuracy, plot_panels
from rsbench.registry import Registry

FigureFn = Callable[..., list[Path]]  # (runs, out_stem, title, max_radius, bands) -> the PNG and PDF paths
FIGURES: Registry[FigureFn] = Registry("figure")
FIGURES.register("certified_accuracy")(plot_certified_accuracy)

# Sound certificates solid (MoG's pooled one dash-dotted), the paper's (unsound under a mixture) dashed.
_CERT_STYLE = {"componentwise": "-", "pooled": "-.", "exact": "-", "paper": "--", "cohen": "-"}


def _mog_runs(runs: Mapping[str, pd.DataFrame], gaussian: bool = False) -> list[tuple[pd.DataFrame, dict]]:
    """(rows, {K, lo, hi, cert, sound}) per MoG run. With ``gaussian``, a hard-vote Gaussian run at sigma s is
    MoG's K = 1 curve (its rows are K = 1's, row for row: tests/test_cli.py) in every panel [lo, s] of the MoG
    runs; meta ``cert`` = "cohen"."""
    out, cohen = [], []
    for label, df in runs.items():
        method = df["method"].iloc[0] if len(df) else None
        if gaussian and method == "gaussian" and "sigma" in df:
            cohen.append(df)
            continue
        require(method == "mog", f"run {label} is not a method=mog certify run"
                + (" or a Gaussian one" if gaussian else ""))
        first = df.iloc[0]
        out.append((df, {"K": int(first["K"]), "lo": float(first["sigma_min"]), "hi": float(first["sigma_max"]),
                         "cert": str(first["certificate"]), "sound": bool(first["sound"])}))
    for df in cohen:
        sigma = float(df["sigma"].iloc[0])
        panels = sorted({m["lo"] for _, m in out if m["hi"] == sigma})
        require(len(panels) > 0, f"the Gaussian run at sigma={sigma:g} matches no MoG panel's sigma_max")
        out += [(df, {"K": 1, "lo": lo, "hi": sigma, "cert": "cohen", "sound": bool(df["sound"].all())})
                for lo in panels]
    return out


def _palette(i: int, count: int) -> Any:
    """Colour ``i`` of ``count`` distinct ones (tab10, then tab20 for more)."""
    return plt.get_cmap("tab10" if count <= 10 else "tab20")(i % 20)


def _cert_label(meta: dict) -> str:
    return f"{meta['cert']}{'' if meta['sound'] else ' (unsound)'}"


@FIGURES.register("mog_fig1")
def mog_figure1(runs: Mapping[str, pd.DataFrame], out_stem: Path, title: str | None = None,
                max_radius: float | None = None, bands: float | None = None) -> list[Path]:
    """MoG paper, Figure 1: certified accuracy for K in {1, 2, 5, 10}, one panel per sigma interval; a Gaussian
    run at a panel's sigma_max is drawn as its K = 1 curve ("cohen")."""
    items = sorted(_mog_runs(runs, gaussian=True), key=lambda r: (r[1]["lo"], r[1]["hi"], r[1]["K"], r[1]["cert"]))
    kinds = sorted({(m["K"], m["cert"]) for _, m in items})  # one colour per K and certificate, in every panel
    panels: dict[str, dict[str, Curve]] = {}
    for df, m in items:
        style = {"color": _palette(kinds.index((m["K"], m["cert"])), len(kinds)),
                 "linestyle": _CERT_STYLE[m["cert"]]}
        panel = panels.setdefault(f"σ ∈ [{m['lo']:g}, {m['hi']:g}]", {})
        panel[f"K={m['K']} {_cert_label(m)}"] = Curve(df, style)
    return plot_panels(panels, out_stem, title, max_radius, bands)


@FIGURES.register("mog_fig2")
def mog_figure2(runs: Mapping[str, pd.DataFrame], out_stem: Path, title: str | None = None,
                max_radius: float | None = None, bands: float | None = None) -> list[Path]:
    """MoG paper, Figure 2: K = 10 with several sigma intervals; one panel per certificate."""
    colors = plt.get_cmap("plasma")
    items = sorted(_mog_runs(runs), key=lambda r: (r[1]["cert"], r[1]["lo"], r[1]["hi"]))
    intervals = sorted({(m["lo"], m["hi"]) for _, m in items})
    panels: dict[str, dict[str, Curve]] = {}
    for df, m in items:
        style = {"color": colors(intervals.index((m["lo"], m["hi"])) / max(1, len(intervals) - 1) * 0.85)}
        panels.setdefault(f"K={m['K']}, certificate {_cert_label(m)}", {})[f"σ ∈ [{m['lo']:g}, {m['hi']:g}]"] = \
            Curve(df, style)
    return plot_panels(panels, out_stem, title, max_radius, bands)


_BOUNDS_PANEL = {"bernstein": "sound: empirical Bernstein bounds", "hoeffding": "sound: Hoeffding bounds",
                 "point": "plug-in means (the paper's; NOT sound)"}


@FIGURES.register("idrs_fig1")
def idrs_figure1(runs: Mapping[str, pd.DataFrame], out_stem: Path, title: str | None = None,
                 max_radius: float | None = None, bands: float | None = None) -> list[Path]:
    """IDRS paper, Figure 1: IDRS vs soft Gaussian RS (sigma 0.25 / 0.5 / 1); one panel per kind of bounds."""
    colors = plt.get_cmap("viridis")
    panels: dict[str, dict[str, Curve]] = {}
    items = []
    for label, df in runs.items():
        require(len(df) > 0 and df["method"].iloc[0] in ("idrs", "gaussian") and "bounds" in df,
                f"run {label} is not a method=idrs or soft method=gaussian certify run")
        first = df.iloc[0]
        items.append((str(first["bounds"]), first["method"] == "idrs", float(first["sigma"]), df))
    sigmas = sorted({s for _, is_idrs, s, _ in items if not is_idrs})
    for bounds, is_idrs, sigma, df in sorted(items, key=lambda t: (t[0], t[1], t[2])):
        style = {"color": "crimson", "lw": 2.2} if is_idrs else \
            {"color": colors(sigmas.index(sigma) / max(1, len(sigmas) - 1) * 0.85), "linestyle": "--"}
        name = "IDRS" if is_idrs else f"standard RS σ={sigma:g}"
        panels.setdefault(_BOUNDS_PANEL.get(bounds, bounds), {})[name] = Curve(df, style)
    return plot_panels(panels, out_stem, title, max_radius, bands)


_NORM_STYLE = {"mahalanobis": {"color": "crimson", "lw": 2.2}, "l2": {"color": "tab:blue", "linestyle": "--"},
               "l1": {"color": "tab:green", "linestyle": ":"}}


@FIGURES.register("dsmooth_fig1")
def dsmooth_figure1(runs: Mapping[str, pd.DataFrame], out_stem: Path, title: str | None = None,
                    max_radius: float | None = None, bands: float | None = None) -> list[Path]:
    """DSmooth, Figure 1 style: DSmooth (Mahalanobis) vs RandSmooth (l2) vs LSmooth (l1), each in its own norm;
    a second panel puts every method in l2 (DSmooth: the largest l2 ball inside its certified ellipsoid) and
    adds the attacked certified accuracy when the runs carry it."""
    own: dict[str, Curve] = {}
    same: dict[str, Curve] = {}
    for label, df in runs.items():
        require(len(df) > 0 and "norm" in df, f"run {label} has no norm column")
        norm = str(df["norm"].iloc[0])
        name = {"dsmooth": "DSmooth", "gaussian": "RandSmooth", "laplace": "LSmooth"}.get(df["method"].iloc[0],
                                                                                         str(df["method"].iloc[0]))
        attacked = ""
        if "attack_inside" in df:
            attacked = f", attacked {attacked_certified_accuracy(df):.2f}"
        own[f"{name}{attacked}"] = Curve(df, _NORM_STYLE.get(norm, {}))  # the panel names each curve's norm
        if norm == "mahalanobis":
            same[f"{name}: largest l2 ball"] = Curve(df.assign(radius=df["l2_radius"], norm="l2"),
                                                    _NORM_STYLE["mahalanobis"])
        elif norm == "l2":
            same[name] = Curve(df, _NORM_STYLE["l2"])
    panels = {"each in its own norm (not comparable)": own}
    if same:
        panels["all in l2"] = same
    return plot_panels(panels, out_stem, title, max_radius, bands)


def _sweep_figure(runs: Mapping[str, pd.DataFrame], out_stem: Path, title: str | None, max_radius: float | None,
                  column: str, bands: float | None = None) -> list[Path]:
    """One curve per value of ``column`` (DSmooth Fig. 3: k; Fig. 4/5: n and alpha), one panel per method."""
    colors = plt.get_cmap("viridis")
    items = []
    for label, df in runs.items():
        require(len(df) > 0 and column in df, f"run {label} has no column {column!r}")
        items.append((str(df["method"].iloc[0]), df[column].iloc[0], df))
    values = sorted({v for _, v, _ in items})
    panels: dict[str, dict[str, Curve]] = {}
    for method, value, df in sorted(items, key=lambda t: (t[0], t[1])):
        style = {"color": colors(values.index(value) / max(1, len(values) - 1) * 0.85)}
        panels.setdefault(method, {})[f"{column} = {value:g}"] = Curve(df, style)
    return plot_panels(panels, out_stem, title, max_radius, bands)


for _column in ("k", "n", "alpha"):
    FIGURES.register(f"sweep_{_column}")(
        lambda runs, out_stem, title=None, max_radius=None, bands=None, _c=_column: _sweep_figure(
            runs, out_stem, title, max_radius, _c, bands))
