"""The benchmarks' one entry point (`python scripts/bench <measurement>`) and their shared harness: pairing,
interleaving, fresh processes, and each measurement run once on a tiny case."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from conftest import REPO

ENTRY = REPO / "scripts" / "bench"


@pytest.fixture
def bench(monkeypatch):
    """The scripts/bench package, imported as `bench`, and removed from sys.modules afterwards; torch's thread
    count is restored (a measurement may set it, and a different count changes later trainings' float sums)."""
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    threads = torch.get_num_threads()
    import bench

    yield bench
    torch.set_num_threads(threads)
    for name in [m for m in sys.modules if m == "bench" or m.startswith("bench.")]:
        del sys.modules[name]


def test_interleaved_alternates_and_skips_the_warm_up(bench) -> None:
    from bench.harness import interleaved

    calls: list[str] = []
    arms = {name: (lambda name=name: calls.append(name) or len(calls)) for name in ("a", "b")}
    got = interleaved(arms, 3, alternate=True, warmup=True)
    # warm-up round (i = -1, odd: reversed), then a b / b a / a b
    assert calls == ["b", "a", "a", "b", "b", "a", "a", "b"]
    assert got == {"a": [3, 6, 7], "b": [4, 5, 8]}
    calls.clear()
    assert interleaved(arms, 2) == {"a": [1, 3], "b": [2, 4]}  # fixed order without alternate


def test_ratios_are_paired_not_ratios_of_medians(bench) -> None:
    from bench.harness import paired_ratios, ratio, spread

    num, den = [1.0, 10.0, 100.0], [1.0, 20.0, 50.0]
    assert paired_ratios(num, den) == [1.0, 0.5, 2.0]
    r = ratio(num, den)
    assert (r.median, r.lo, r.hi) == (1.0, 0.5, 2.0)
    assert spread(num).median / spread(den).median == 0.5  # what an unpaired summary would have said
    assert f"{r}" == "1.00 [0.50-2.00]" and f"{r:.1f}" == "1.0 [0.5-2.0]" and r.range() == "0-2"
    with pytest.raises(ValueError, match="unpaired"):
        ratio([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="no measurements"):
        spread([])


def test_rate_counts_samples_over_wall_time(bench) -> None:
    from bench.harness import rate, seconds

    calls = []

    def work() -> None:
        calls.append(1)
        time.sleep(0.01)

    got = rate(work, 10, 0.05)
    assert len(calls) >= 1 + 5  # the warm-up call, then at least min_time / 0.01 timed calls
    assert 0 < got <= 10 / 0.01  # each call takes at least 10 ms
    assert seconds(lambda: time.sleep(0.02)) >= 0.02


def test_fresh_process_reads_the_last_json_line_and_reports_failures(bench) -> None:
    from bench.harness import fresh_process

    assert fresh_process(["-c", "print('noise'); print('{\"rate\": 2.5}')"]) == {"rate": 2.5}
    with pytest.raises(SystemExit, match="exit 3.*boom"):
        fresh_process(["-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"])


def test_tree_at_exports_a_commit_and_names_a_bad_one(bench, tmp_path) -> None:
    from bench.harness import tree_at

    tree = tree_at("HEAD", tmp_path)
    assert (tree / "rsbench" / "certify" / "sampling.py").is_file()
    with pytest.raises(SystemExit, match="cannot read commit 'no-such-commit'"):
        tree_at("no-such-commit", tmp_path / "bad")


def test_entry_point_lists_measurements_and_refuses_an_unknown_one(bench) -> None:
    listed = subprocess.run([sys.executable, str(ENTRY)], capture_output=True, text=True, check=True).stdout
    for name in bench.COMMANDS:
        assert re.search(rf"^  {name}\s", listed, re.M), name
    bad = subprocess.run([sys.executable, str(ENTRY), "certfy"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "unknown measurement 'certfy'" in bad.stderr and "did you mean 'certify'" in bad.stderr


def test_every_measurement_has_a_main_with_help(bench, capsys) -> None:
    import importlib

    for name, (module, _) in bench.COMMANDS.items():
        mod = importlib.import_module(f"bench.{module}")
        with pytest.raises(SystemExit) as exit_:
            mod.main(["--help"])
        assert exit_.value.code == 0, name
        assert f"python scripts/bench {name}" in capsys.readouterr().out, name


def test_docs_name_only_scripts_that_exist_and_every_measurement(bench) -> None:
    """A benchmark renamed or removed must not leave commands in the docs or the Makefile that no longer run."""
    texts = {p: p.read_text() for p in [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md", REPO / "Makefile"]}
    for path, text in texts.items():
        for script in set(re.findall(r"scripts/[\w/]+\.(?:py|sh)", text)):
            assert (REPO / script).is_file(), f"{path.name} names {script}, which does not exist"
        for name in set(re.findall(r"scripts/bench ([a-z]+)", text)):
            assert name in bench.COMMANDS, f"{path.name} names the measurement {name!r}, which does not exist"
    table = texts[REPO / "docs" / "PERFORMANCE.md"]
    assert {m for m in re.findall(r"^\| `([a-z]+)` \|", table, re.M)} == set(bench.COMMANDS)


@pytest.mark.parametrize("pooling,points_per_request", [("request", 3), ("forward", 1)])
def test_multipoint_bench_pools_the_way_the_stage_does(bench, monkeypatch, pooling, points_per_request) -> None:
    """The multi-point timing once handed its samplers the pooled model but not the pool, so it timed
    forward-only pooling instead of what certify.points_per_batch runs: pin which one each mode times."""
    from bench.certify_throughput import multipoint_rates
    from bench.harness import MNIST

    from rsbench.certify import sampling

    seen, inner = [], sampling.class_counts_many

    def recording(model, noise, xs, *args, **kwargs):
        seen.append(len(xs))
        return inner(model, noise, xs, *args, **kwargs)

    monkeypatch.setattr(sampling, "class_counts_many", recording)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    multipoint_rates(model, MNIST, 400, 100, 3, 0.0, False, None, pooling)
    single_calls = 2 * 2 * 3  # rate's warm-up and timed call, 3 points, selection and estimation each
    assert seen[:single_calls] == [1] * single_calls
    assert set(seen[single_calls:]) == {points_per_request}


def test_certify_bench_runs_and_writes_its_table(bench, tmp_path, capsys) -> None:
    from bench.certify_throughput import main

    main(["--models", "mnist_mlp_784-200-10", "--repeats", "2", "--min-time", "0.01", "--n", "1000",
          "--out", str(tmp_path)])
    df = pd.read_csv(tmp_path / "bench.csv")
    assert list(df["sampler"]) == ["direct", "pushforward"]
    assert (df["ratio"] > 0).all() and (df["certify_samples_s"] > 0).all() and (df["n"] == 1000).all()
    assert "| mnist_mlp_784-200-10 |" in (tmp_path / "bench.md").read_text()
    with pytest.raises(SystemExit, match="unknown --models"):
        main(["--models", "nope"])


def test_train_bench_ratio_is_the_paired_epoch_over_step(bench, tmp_path) -> None:
    from bench.train_throughput import main

    main(["--images", "128", "--repeats", "2", "--threads", str(torch.get_num_threads()), "--out", str(tmp_path)])
    table = pd.read_csv(tmp_path / "bench_train.csv").set_index("measure")
    assert list(table.index) == ["step images/s", "epoch images/s", "epoch / step"]
    assert (table["median"] > 0).all() and (table["min"] <= table["median"]).all()
    assert (table["median"] <= table["max"]).all()


def test_allocator_bench_runs_each_setting_in_a_fresh_process(bench, tmp_path) -> None:
    from bench.allocator import main

    main(["--cases", "mnist_cnn:8", "--repeats", "1", "--min-time", "0.05", "--out", str(tmp_path)])
    row = pd.read_csv(tmp_path / "allocator.csv").iloc[0]
    assert row["model"] == "mnist_cnn" and row["batch"] == 8
    assert row["ratio"] == pytest.approx(row["tuned_samples_s"] / row["default_samples_s"])


def test_host_bench_against_this_commit_gives_identical_rows(bench, capsys) -> None:
    from bench.host import main

    main(["HEAD", "--pairs", "1", "--points", "3", "--n", "100"])
    out = capsys.readouterr().out
    assert "rows identical: True" in out and "n=   100" in out


def _certify_csv(path, correct, radius, n_used) -> None:
    path.mkdir(parents=True)
    pd.DataFrame({"idx": range(len(correct)), "correct": correct, "radius": radius, "n0": 100,
                  "n_used": n_used, "time_s": 0.5, "method": "gaussian"}).to_csv(path / "certify.csv", index=False)


def test_sequential_and_columns_report_known_numbers(bench, tmp_path, capsys) -> None:
    from bench import columns, sequential

    _certify_csv(tmp_path / "fixed", [1, 1, 0, 1], [0.3, 0.6, 0.0, 0.1], [1000] * 4)
    _certify_csv(tmp_path / "seq", [1, 1, 0, 0], [0.3, 0.2, 0.0, 0.0], [100, 300, 100, 100])
    sequential.main([str(tmp_path / "fixed"), str(tmp_path / "seq")])
    out = capsys.readouterr().out
    assert "fixed-n 1,100, sequential 250 (4.4x fewer)" in out
    # r = 0.25: fixed certifies points 0 and 1, sequential only point 0: difference -1/4
    assert "| 0.25 | 0.500 | 0.250 | -0.250 ± 0.250 | 1 |" in out
    columns.main([str(tmp_path / "fixed"), "--columns", "radius"])
    line = next(line for line in capsys.readouterr().out.splitlines() if "radius" in line)
    assert line.split()[-5:] == ["4", "0.2500", "0.2000", "0.0000", "0.6000"]


def test_sampler_bench_loads_the_old_sampler_beside_the_new(bench, tmp_path) -> None:
    from bench.sampler import old_sampling

    old = old_sampling("HEAD", tmp_path)
    try:
        assert old.__name__ == "old_sampling" and hasattr(old, "PointSampler")
    finally:
        sys.modules.pop("old_sampling", None)


def test_json_of_fresh_process_is_what_the_allocator_child_prints(bench) -> None:
    out = subprocess.run([sys.executable, str(ENTRY), "allocator", "--child", "mnist_cnn", "4", "--min-time", "0.01"],
                         capture_output=True, text=True, check=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    assert set(got) == {"tuned", "rate"} and got["rate"] > 0
