"""Test-point intervals on certified accuracy (Clopper-Pearson) and ACR (bootstrap): coverage by simulation,
and the summary tables, Markdown and CLI that show them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rsbench.analysis.curves import format_table, summary_table, to_markdown
from rsbench.analysis.intervals import (
    bootstrap_mean_interval,
    certified_accuracy_intervals,
    check_level,
    clopper_pearson_interval,
)
from rsbench.errors import RsbenchError


@pytest.mark.parametrize("p,m", [(0.02, 50), (0.3, 100), (0.9, 200), (0.995, 1000)])
def test_clopper_pearson_covers_at_least_the_level(p, m) -> None:
    rng = np.random.default_rng(int(p * 1000) + m)
    level, trials = 0.9, 4000
    ks = rng.binomial(m, p, trials)
    covered = np.mean([lo <= p <= hi for lo, hi in (clopper_pearson_interval(int(k), m, level) for k in ks)])
    assert covered >= level - 3 * np.sqrt(level * (1 - level) / trials)  # exact: never below the level


def test_bootstrap_acr_interval_covers_near_the_level() -> None:
    """Radius * correct with an atom at 0 (abstentions, errors) and a continuous part, as in certify tables."""
    rng = np.random.default_rng(1)
    level, trials, m = 0.9, 400, 300
    truth = 0.7 * 0.5  # P(correct) * E[radius | correct], radius ~ Exp(mean 0.5)
    covered = 0
    for t in range(trials):
        values = (rng.random(m) < 0.7) * rng.exponential(0.5, m)
        lo, hi = bootstrap_mean_interval(values, level, draws=1000, seed=t)
        covered += lo <= truth <= hi
    assert abs(covered / trials - level) <= 3 * np.sqrt(level * (1 - level) / trials) + 0.01


def test_vectorised_intervals_equal_the_scalar_ones() -> None:
    rng = np.random.default_rng(2)
    correct, radius = rng.random(80) < 0.8, rng.exponential(0.4, 80)
    radii = [0.0, 0.1, 0.5, 1.0, 10.0]
    got = certified_accuracy_intervals(correct, radius, radii, 0.95)
    for r, (lo, hi) in zip(radii, got, strict=True):
        k = int(np.sum(correct & (radius >= r)))
        assert (lo, hi) == pytest.approx(clopper_pearson_interval(k, 80, 0.95), abs=1e-12)
    assert clopper_pearson_interval(0, 10)[0] == 0 and clopper_pearson_interval(10, 10)[1] == 1


def test_summary_tables_show_intervals_and_their_level() -> None:
    df = pd.DataFrame({"correct": [1, 1, 1, 0] * 25, "radius": [0.6, 0.3, 0.0, 0.0] * 25, "predict": [1] * 100,
                       "time_s": [0.1] * 100})
    table = summary_table({"run": df}, [0.0, 0.5], 0.95)
    row = table.loc["run"]
    assert row["r=0.5"] == 0.25 and row["r=0.5 lo"] < 0.25 < row["r=0.5 hi"] and row["level"] == 0.95
    assert row["ACR lo"] < row["ACR"] < row["ACR hi"]
    text = format_table(table).splitlines()
    assert text[2].startswith("  95% CI") and f"{row['r=0.5 lo']:.2f}-{row['r=0.5 hi']:.2f}" in text[2]
    md = to_markdown(table)
    assert "r=0.5 (95% CI)" in md and f"0.250 [{row['r=0.5 lo']:.3f}, {row['r=0.5 hi']:.3f}]" in md
    plain = summary_table({"run": df}, [0.0, 0.5], None)
    assert "r=0.5 lo" not in plain.columns and "CI" not in format_table(plain)
    with pytest.raises(RsbenchError, match="strictly between 0 and 1"):
        check_level(1.5)


def test_across_seeds_is_the_t_interval() -> None:
    from scipy.stats import t

    from rsbench.analysis.seeds import across_seeds

    v = np.array([[0.5, 1.0], [0.7, 1.2], [0.6, 0.8]])
    mean, lo, hi = across_seeds(v, 0.95)
    half = t.ppf(0.975, 2) * v.std(axis=0, ddof=1) / np.sqrt(3)
    assert np.allclose(mean, v.mean(0)) and np.allclose(lo, mean - half) and np.allclose(hi, mean + half)


def test_plot_aggregates_runs_that_differ_only_in_seed(tmp_path) -> None:
    """certify -m seed=0,1,2 (a model per seed, noise per seed) -> plot: one curve and one row, '(3 seeds)'."""
    from conftest import TINY_CERTIFY, run_cli
    from rsbench.analysis.curves import summary

    sweep = tmp_path / "sweep"
    run_cli(["certify", "-m", *TINY_CERTIFY, "seed=0,1,2", f"hydra.sweep.dir={sweep}"], tmp_path)
    run_cli(["plot", f"runs=[{sweep}]", "radii=[0,0.25]", f"hydra.run.dir={tmp_path / 'plot'}"], tmp_path)
    table = pd.read_csv(tmp_path / "plot" / "certified_accuracy.csv", index_col="run")
    assert len(table) == 1 and table.index[0].endswith("(3 seeds)") and table.iloc[0]["seeds"] == 3
    per_seed = [summary(pd.read_csv(p), [0, 0.25], None) for p in sorted(sweep.glob("*/certify.csv"))]
    assert len(per_seed) == 3
    row = table.iloc[0]
    assert row["ACR"] == pytest.approx(np.mean([s["ACR"] for s in per_seed]))
    assert row["r=0 lo"] <= row["r=0"] <= row["r=0 hi"]
