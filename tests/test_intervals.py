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


def _sra_summaries(root, settings: dict[str, tuple[dict, list[float]]]) -> None:
    """Fake `rsbench robustness` outputs: per setting, a loss and one clean accuracy per seed."""
    import json

    for name, (loss, accs) in settings.items():
        for seed, acc in enumerate(accs):
            run = root / name / f"seed-{seed}"
            run.mkdir(parents=True)
            run.joinpath("summary.json").write_text(json.dumps(
                {"loss": loss, "seed": seed, "clean_acc": acc, "auc_cr_margin": 2 * acc, "auc_cr_rs": 0.5,
                 "auc_gn": 1.0 + seed, "mscr_vs_mc_mean_abs_diff": 0.0, "mscr_vs_mc_corr": 1.0}))
            pd.DataFrame({"curve": "linear_corruption", "x": [1.0, 0.5, 0.0], "value": [acc, acc / 2, 0.1]}) \
                .to_csv(run / "curves.csv", index=False)


def test_seed_table_and_paired_differences_for_sra(tmp_path) -> None:
    """scripts/sra_figures.py on three seeds per setting: seed means with t-intervals, and A - B paired by
    seed (the per-seed differences 0.02, 0.03, 0.01 have mean 0.02 and sd 0.01)."""
    import subprocess
    import sys
    from pathlib import Path

    from scipy.stats import t

    from rsbench.analysis.seeds import paired_seed_difference

    _sra_summaries(tmp_path, {"mscr": ({"name": "mscr", "d": 1.0, "var_x": 0.01}, [0.92, 0.95, 0.90]),
                              "mcr": ({"name": "mcr", "d": 1.0}, [0.90, 0.92, 0.89])})
    script = Path(__file__).resolve().parents[1] / "scripts" / "sra_figures.py"
    out = subprocess.run([sys.executable, str(script), str(tmp_path), "--compare", "mscr d=1.0 var_x=0.01",
                          "mcr d=1.0 var_x=None"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    seeds = pd.read_csv(tmp_path / "seeds.csv").set_index("label")
    row = seeds.loc["mscr d=1.0 var_x=0.01"]
    half = t.ppf(0.975, 2) * np.std([0.92, 0.95, 0.90], ddof=1) / np.sqrt(3)
    assert row["seeds"] == 3 and row["clean_acc"] == pytest.approx(0.92333, abs=1e-4)
    assert row["clean_acc lo"] == pytest.approx(0.92333 - half, abs=1e-4)
    compare = (tmp_path / "compare.md").read_text()
    assert "diff (95% CI)" in compare and "3/0" in compare  # MSCR above MCR at every seed
    table = pd.read_csv(tmp_path / "table.csv")
    diff = paired_seed_difference(table[table["loss"] == "mscr"], table[table["loss"] == "mcr"], "clean_acc", 0.95)
    half = t.ppf(0.975, 2) * 0.01 / np.sqrt(3)
    assert diff["diff"] == pytest.approx(0.02) and diff["diff lo"] == pytest.approx(0.02 - half)
    assert diff["seeds"] == 3
    with pytest.raises(RsbenchError, match="no seed in common"):
        paired_seed_difference(table[table["seed"] == 0], table[table["seed"] == 1], "clean_acc", 0.95)
    bad = subprocess.run([sys.executable, str(script), str(tmp_path), "--compare", "mscr", "mcr"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "settings: mcr d=1.0 var_x=None, mscr d=1.0 var_x=0.01" in bad.stderr
