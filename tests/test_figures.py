"""Paper figures (rsbench.plot.figures): which curve lands in which panel."""

from __future__ import annotations

import pandas as pd
import pytest

from rsbench.errors import RsbenchError
from rsbench.plot.figures import _mog_runs, mog_figure1


def _rows(method: str, **cols) -> pd.DataFrame:
    base = {"idx": [0, 1, 2], "label": [1, 2, 3], "predict": [1, 2, -1], "radius": [0.5, 0.2, 0.0],
            "correct": [1, 1, 0], "sound": [True, True, True], "method": method}
    return pd.DataFrame({**base, **cols})


def test_a_gaussian_run_is_the_k1_curve_of_the_panels_at_its_sigma(tmp_path) -> None:
    runs = {"a": _rows("mog", K=10, sigma_min=0.5, sigma_max=1.0, certificate="pooled"),
            "b": _rows("mog", K=10, sigma_min=0.25, sigma_max=0.5, certificate="pooled"),
            "cohen 1.0": _rows("gaussian", sigma=1.0)}
    items = _mog_runs(runs, gaussian=True)
    cohen = [m for _, m in items if m["cert"] == "cohen"]
    assert cohen == [{"K": 1, "lo": 0.5, "hi": 1.0, "cert": "cohen", "sound": True}]  # not in the [0.25, 0.5] panel
    figs = mog_figure1(runs, tmp_path / "fig1")
    assert all(p.stat().st_size > 0 for p in figs)
    with pytest.raises(RsbenchError, match="matches no MoG panel"):
        _mog_runs({"a": runs["a"], "c": _rows("gaussian", sigma=0.25)}, gaussian=True)
    with pytest.raises(RsbenchError, match="not a method=mog"):
        _mog_runs({"a": runs["a"], "c": runs["cohen 1.0"]})  # Fig. 2 takes MoG runs only


def test_a_long_figure_title_is_wrapped_inside_the_figure_and_a_short_one_is_kept() -> None:
    import matplotlib.pyplot as plt

    from rsbench.plot.certified_accuracy import fit_suptitle

    title = ("SmoothMix vs Gaussian augmentation, MNIST LeNet, sigma = 0.25, N = 10,000, alpha = 0.001, "
             "500 test points, cpu scale, with 95% Clopper-Pearson bands")
    fig, _ = plt.subplots(figsize=(5.2, 3.9))
    fit_suptitle(fig, title, fontsize=11)
    text = fig._suptitle
    renderer = fig.canvas.get_renderer()
    assert text.get_text().count("\n") >= 1
    assert text.get_window_extent(renderer).width <= fig.bbox.width
    assert text.get_text().split() == title.split()  # wrapped, no word lost
    fit_suptitle(fig, "short", fontsize=11)
    assert fig._suptitle.get_text() == "short"
    plt.close(fig)


def _texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_radius_axes_say_their_norm_and_a_mixed_panel_says_it_in_the_legend() -> None:
    """No Mahalanobis or l1 radius is labelled l2: the axis takes the rows' norm; a panel of several norms names
    each curve's."""
    from rsbench.plot.certified_accuracy import Curve, draw_panels

    ds = _rows("dsmooth", norm="mahalanobis", sigma=0.5)
    lap = _rows("laplace", norm="l1", scale=0.25)
    fig = draw_panels({"a": {"DSmooth": Curve(ds)}, "b": {"LSmooth": Curve(lap)}, "c": {"Cohen": Curve(_rows("x"))},
                       "mixed": {"DSmooth": Curve(ds), "LSmooth": Curve(lap)}})
    labels = [ax.get_xlabel() for ax in fig.axes]
    assert labels[:3] == ["radius (mahalanobis)", "radius (l1)", "radius (l2)"], labels
    assert "l2" not in labels[3] and _texts(fig.axes[3]) == ["DSmooth [mahalanobis]", "LSmooth [l1]"]


def test_the_radius_cap_is_marked_curves_differ_and_point_counts_show_when_they_differ() -> None:
    from scipy.stats import norm

    from rsbench.plot.certified_accuracy import Curve, draw_panels

    hard = dict(sigma=0.25, smoothing="hard", n=1000, alpha=0.001, norm="l2")
    a, b = _rows("gaussian", **hard), _rows("gaussian", **hard).head(2)
    fig = draw_panels({"": {"A": Curve(a, {"color": "red"}), "B": Curve(b, {"color": "red"})}}, max_radius=2.0)
    ax = fig.axes[0]
    cap = 0.25 * norm.ppf(0.001 ** (1 / 1000))
    dotted = [line for line in ax.get_lines() if line.get_linestyle() == ":" and len(line.get_xdata()) == 2]
    assert any(abs(float(line.get_xdata()[0]) - cap) < 1e-9 for line in dotted), cap
    assert "radius cap of n, α (dotted)" in _texts(ax) and {"A (3 pts)", "B (2 pts)"} <= set(_texts(ax))
    curves = [line for line in ax.get_lines() if line.get_label() in ("A (3 pts)", "B (2 pts)")]
    assert len({(line.get_color(), line.get_linestyle()) for line in curves}) == 2  # same colour asked: new style


def test_curves_crowding_near_the_top_get_their_own_range() -> None:
    from rsbench.plot.certified_accuracy import Curve, draw_panels

    high = _rows("x").assign(radius=[5.0, 5.0, 5.0], correct=[1, 1, 1])
    fig = draw_panels({"": {"A": Curve(high)}}, max_radius=1.0)
    assert fig.axes[0].get_ylim()[0] > 0.5
    fig = draw_panels({"": {"A": Curve(_rows("x"))}}, max_radius=1.0)
    assert fig.axes[0].get_ylim()[0] == 0
