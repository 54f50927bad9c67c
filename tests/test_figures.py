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
