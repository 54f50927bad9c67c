"""``rsbench compare``: paired differences of two certify runs (bootstrap interval coverage, McNemar, CLI)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from conftest import REPO, TINY_CERTIFY, run_cli
from rsbench.analysis.paired import align, paired_comparison
from rsbench.errors import RsbenchError


def _run(correct, radius, idx=None) -> pd.DataFrame:
    n = len(correct)
    return pd.DataFrame({"idx": np.arange(n) if idx is None else idx, "label": np.zeros(n, int),
                         "correct": np.asarray(correct, int), "radius": np.asarray(radius, float)})


def test_paired_interval_covers_the_true_difference() -> None:
    """Correlated pairs: each point is hard (both fail), easy (both certify) or certified by one run only."""
    rng = np.random.default_rng(0)
    level, trials, m = 0.9, 300, 200
    probs = [0.3, 0.5, 0.15, 0.05]  # both fail, both certify, A only, B only -> true A - B = 0.10
    covered = 0
    for t in range(trials):
        kind = rng.choice(4, size=m, p=probs)
        a, b = np.isin(kind, (1, 2)), np.isin(kind, (1, 3))
        table = paired_comparison(_run(a, a * 1.0), _run(b, b * 1.0), [0.5], level, draws=1000, seed=t)
        covered += table.loc[0, "lo"] <= 0.10 <= table.loc[0, "hi"]
    assert abs(covered / trials - level) <= 3 * np.sqrt(level * (1 - level) / trials) + 0.02


def test_table_values_and_mcnemar() -> None:
    a = _run([1, 1, 1, 0, 1, 0], [0.8, 0.3, 0.6, 0.0, 0.9, 0.0])
    b = _run([1, 0, 1, 1, 1, 0], [0.2, 0.0, 0.7, 0.4, 0.9, 0.0])
    t = paired_comparison(a, b, [0.0, 0.5]).set_index("measure")
    assert t.loc["r=0", "A"] == pytest.approx(4 / 6) and t.loc["r=0", "B"] == pytest.approx(4 / 6)
    assert (t.loc["r=0.5", "A only"], t.loc["r=0.5", "B only"]) == (1, 0)  # point 0: A 0.8 vs B 0.2
    assert t.loc["r=0.5", "mcnemar_p"] == pytest.approx(binomtest(1, 1, 0.5).pvalue)
    acr = (np.array([0.8, 0.3, 0.6, 0, 0.9, 0]) - np.array([0.2, 0, 0.7, 0.4, 0.9, 0])).mean()
    assert t.loc["ACR", "A-B"] == pytest.approx(acr) and t.loc["ACR", "lo"] <= acr <= t.loc["ACR", "hi"]


def test_cap_clips_both_runs_radii() -> None:
    """Radii beyond the cap count as the cap: ACR and the counts beyond it worked out by hand."""
    a = _run([1, 1, 1, 0], [1.9, 0.3, 1.2, 2.0])
    b = _run([1, 1, 0, 1], [0.9, 1.5, 0.0, 0.5])
    t = paired_comparison(a, b, [0.0, 0.8, 1.0], cap=0.8)
    acr = (np.array([0.8, 0.3, 0.8, 0]) - np.array([0.8, 0.8, 0, 0.5])).mean()
    row = t.set_index("measure")
    assert row.loc["ACR", "A-B"] == pytest.approx(acr) and row.loc["ACR", "A"] == pytest.approx(1.9 / 4)
    assert row.loc["r=0.8", "A"] == pytest.approx(0.5) and row.loc["r=1", "A"] == 0 == row.loc["r=1", "B"]
    assert t.attrs["beyond_cap"] == (2, 2)  # A's wrong point at 2.0 is not counted
    uncapped = paired_comparison(a, b, [0.0]).set_index("measure")
    assert uncapped.loc["ACR", "A-B"] == pytest.approx((3.4 - 2.9) / 4) and uncapped.attrs["beyond_cap"] is None
    with pytest.raises(RsbenchError, match="positive radius"):
        paired_comparison(a, b, [0.0], cap=0.0)


def test_only_common_points_and_refusals() -> None:
    a, b = _run([1, 1, 0], [1, 1, 0], idx=[0, 10, 20]), _run([1, 0], [1, 0], idx=[10, 20])
    assert len(align(a, b)[0]) == 2
    with pytest.raises(RsbenchError, match="no test point in common"):
        align(a, _run([1], [1], idx=[5]))
    c = _run([1, 0], [1, 0], idx=[10, 20]).assign(label=[3, 3])
    with pytest.raises(RsbenchError, match="disagree on the labels"):
        align(a, c)


def test_cli_compare(tmp_path, tiny_model, capsys) -> None:
    from rsbench import cli

    for name, sigma in (("a", 0.25), ("b", 0.5)):
        run_cli(["certify", *TINY_CERTIFY, f"sigma={sigma}", f"model.checkpoint={tiny_model}",
                 f"hydra.run.dir={tmp_path / name}"], tmp_path)
    capsys.readouterr()
    cli.main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--radii", "0,0.25", "-o", str(tmp_path / "c.csv")])
    out = capsys.readouterr().out
    assert "6 common test points" in out and "95% CI (paired)" in out and "McNemar p" in out
    assert list(pd.read_csv(tmp_path / "c.csv")["measure"]) == ["r=0", "r=0.25", "ACR"]
    with pytest.raises(SystemExit) as exc:
        cli.main(["compare", str(tmp_path / "a"), str(tmp_path / "nowhere")])
    assert exc.value.code == 2 and "neither a certify.csv" in capsys.readouterr().err
    # another radius column: A's radii halved compare as such, and a missing column is named
    df = pd.read_csv(tmp_path / "a" / "certify.csv")
    df.assign(half=df["radius"] / 2).to_csv(tmp_path / "half.csv", index=False)
    cli.main(["compare", str(tmp_path / "half.csv"), str(tmp_path / "a"), "--radius-a", "half", "--radii", "0",
              "-o", str(tmp_path / "h.csv")])
    acr = pd.read_csv(tmp_path / "h.csv").set_index("measure").loc["ACR"]
    assert acr["A"] == pytest.approx(acr["B"] / 2) and acr["B"] > 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        cli.main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--radius-a", "l2_radius"])
    assert exc.value.code == 2 and "lacks columns ['l2_radius']" in capsys.readouterr().err
    # --cap: A's ACR is then at most the cap, the message counts the points beyond it, the CSV records it
    cli.main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--radii", "0", "--cap", "0.05",
              "-o", str(tmp_path / "cap.csv")])
    assert "radii capped at 0.05: correct points certified beyond it, A " in capsys.readouterr().out
    capped = pd.read_csv(tmp_path / "cap.csv")
    assert (capped["cap"] == 0.05).all() and capped.set_index("measure").loc["ACR", "A"] <= 0.05
    with pytest.raises(SystemExit) as exc:
        cli.main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--cap", "-1"])
    assert exc.value.code == 2 and "must be a positive radius" in capsys.readouterr().err
    for flag, value, message in (("--draws", "0", "--draws=0 is invalid"),
                                 ("--level", "1.5", "--level=1.5 is invalid")):
        with pytest.raises(SystemExit) as exc:
            cli.main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), flag, value])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and message in err and "--radii" not in err.splitlines()[-1], err


def test_cohen_per_image_files_with_either_time_format(tmp_path, capsys) -> None:
    """Cohen et al.'s certify.py writes each time as str(timedelta) ('0:00:03.003228'); later files write
    seconds. Both read, as seconds; a time in neither form is refused with its line."""
    from rsbench.compare import main as compare_main
    from rsbench.results import read_results

    rows = [(0, 3, 3, 0.635, 1, "0:00:03.003228"), (1, 8, 8, 0.2, 1, "1 day, 0:00:01"), (2, 8, 1, 0.1, 0, "15.4")]
    path = tmp_path / "noise_0.50"
    header = "idx\tlabel\tpredict\tradius\tcorrect\ttime\n"
    path.write_text(header + "".join("\t".join(map(str, r)) + "\n" for r in rows))
    df = read_results(path)
    assert list(df["time_s"]) == [3.003228, 86401.0, 15.4] and list(df["radius"]) == [0.635, 0.2, 0.1]
    ours = tmp_path / "certify.csv"
    pd.DataFrame({"idx": [0, 1, 2], "label": [3, 8, 8], "predict": [3, 8, 8], "radius": [0.5, 0.3, 0.2],
                  "correct": [1, 1, 1], "time_s": [1.0, 1.0, 1.0]}).to_csv(ours, index=False)
    compare_main([str(ours), str(path), "--radii", "0,0.25"])
    assert "3 common test points" in capsys.readouterr().out
    path.write_text("idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t3\t3\t0.6\t1\tthree seconds\n")
    with pytest.raises(RsbenchError, match="line 2: time_s='three seconds'"):
        read_results(path)


@pytest.mark.skipif(not (REPO.parent / "shared" / "published").is_dir(), reason="no ../shared/published here")
def test_the_shared_published_files_plot_and_compare(tmp_path, capsys) -> None:
    """The three published per-image files of Cohen et al. (../shared/published) read, pair and plot."""
    from rsbench.compare import main as compare_main
    from rsbench.results import read_results

    files = sorted((REPO.parent / "shared" / "published").rglob("*.tsv"))
    assert len(files) == 3
    frames = [read_results(f) for f in files]
    assert all(len(df) >= 100 and df["time_s"].dtype == float for df in frames)
    compare_main([str(files[0]), str(files[1]), "--radii", "0,0.5"])
    assert f"{len(frames[0].merge(frames[1], on='idx'))} common test points" in capsys.readouterr().out
    run_cli(["plot", f"runs=[{files[0]},{files[1]}]", f"hydra.run.dir={tmp_path / 'plot'}"], tmp_path)
    assert (tmp_path / "plot" / "certified_accuracy.png").is_file()
