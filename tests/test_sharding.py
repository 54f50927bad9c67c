"""Sharded certification: partition, merge == unsharded, missing/overlapping shards, kills at random rows."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from conftest import REPO, TINY_CERTIFY, read_rows, run_cli, run_cli_subprocess
from rsbench.errors import RsbenchError
from rsbench.sharding import merge_runs, shard_indices
from rsbench.stages.common import select_indices

ARGS = [*TINY_CERTIFY, "certify.skip=25"]  # 12 test points


@pytest.mark.parametrize("total,skip,max_index", [(1000, 1, -1), (97, 3, 50), (10, 20, -1), (5, 1, -1)])
def test_partition_is_disjoint_and_complete(total, skip, max_index) -> None:
    selection = select_indices(total, skip, max_index)
    for n in range(1, 9):
        parts = [shard_indices(selection, i, n) for i in range(n)]
        flat = [i for p in parts for i in p]
        assert sorted(flat) == selection and len(flat) == len(set(flat))
        assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced
        assert parts == [shard_indices(selection, i, n) for i in range(n)]  # deterministic
    with pytest.raises(RsbenchError, match="shard=3 is invalid"):
        shard_indices(selection, 3, 3)
    with pytest.raises(RsbenchError, match="num_shards=0"):
        shard_indices(selection, 0, 0)


def _run(tmp_path, name, *extra, model):
    run_cli(["certify", *ARGS, *extra, f"model.checkpoint={model}", f"hydra.run.dir={tmp_path / name}"], tmp_path)
    return tmp_path / name


def test_merge_equals_unsharded_and_refuses_gaps(tmp_path, tiny_model, capsys) -> None:
    full = _run(tmp_path, "full", model=tiny_model)
    shards = [_run(tmp_path, f"s{i}", f"certify.shard={i}", "certify.num_shards=3", model=tiny_model)
              for i in range(3)]
    assert sorted(sum((pd.read_csv(s / "certify.csv")["idx"].tolist() for s in shards), [])) == \
        pd.read_csv(full / "certify.csv")["idx"].tolist()
    merge_runs(shards[::-1], tmp_path / "merged")
    pd.testing.assert_frame_equal(read_rows(tmp_path / "merged" / "certify.csv"), read_rows(full / "certify.csv"))

    with pytest.raises(RsbenchError, match=r"missing shards \[2\] of 3"):
        merge_runs(shards[:2], tmp_path / "m2")
    with pytest.raises(RsbenchError, match="overlapping shards: shard 1 of 3"):
        merge_runs([*shards, shards[1]], tmp_path / "m3")
    other = _run(tmp_path, "other", "certify.shard=2", "certify.num_shards=3", "certify.n=301", model=tiny_model)
    with pytest.raises(RsbenchError, match="different configurations"):
        merge_runs([*shards[:2], other], tmp_path / "m4")
    # a shard that died mid-run: merge names the missing indices
    csv = shards[1] / "certify.csv"
    lines = csv.read_text().splitlines(keepends=True)
    csv.write_text("".join(lines[:2]) + lines[2][:7])
    with pytest.raises(RsbenchError, match=r"shard 1 .* is missing 3 of 4 indices: 100, 175, 250"):
        merge_runs(shards, tmp_path / "m5")
    # ... and resuming it (same command) completes the merge
    _run(tmp_path, "s1", "certify.shard=1", "certify.num_shards=3", model=tiny_model)
    merge_runs(shards, tmp_path / "m6")
    pd.testing.assert_frame_equal(read_rows(tmp_path / "m6" / "certify.csv"), read_rows(full / "certify.csv"))
    # the CLI form
    from rsbench import cli
    cli.main(["merge", *map(str, shards), "-o", str(tmp_path / "m7")])
    assert "merged 3 shard(s), 12 rows" in capsys.readouterr().out
    # a duplicated idx is refused, never collapsed to the last copy
    csv = shards[0] / "certify.csv"
    rows = csv.read_text().splitlines(keepends=True)
    csv.write_text("".join(rows) + rows[1])
    with pytest.raises(RsbenchError, match=r"line 6: idx=0 appears twice"):
        merge_runs(shards, tmp_path / "m8")
    csv.write_text("".join(rows))
    (shards[2] / "certify.csv").write_text((shards[2] / "certify.csv").read_text() + rows[1])
    with pytest.raises(RsbenchError, match=r"idx \[0\] that another shard also holds"):
        merge_runs(shards, tmp_path / "m9")
    # a path that does not exist is named
    with pytest.raises(SystemExit) as info:
        cli.main(["merge", str(tmp_path / "nonexistent")])
    assert info.value.code == 2 and "nonexistent does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_kill_at_random_row_then_resume(tmp_path, tiny_model, seed) -> None:
    full = _run(tmp_path, "full", "certify.shard=1", "certify.num_shards=2", model=tiny_model)
    run = _run(tmp_path, "killed", "certify.shard=1", "certify.num_shards=2", model=tiny_model)
    data = (run / "certify.csv").read_bytes()
    cut = random.Random(seed).randrange(len(data.splitlines()[0]) + 1, len(data))  # anywhere after the header
    (run / "certify.csv").write_bytes(data[:cut])
    _run(tmp_path, "killed", "certify.shard=1", "certify.num_shards=2", model=tiny_model)
    pd.testing.assert_frame_equal(read_rows(run / "certify.csv"), read_rows(full / "certify.csv"))


def test_submitit_local_sharded_sweep(tmp_path, tiny_model) -> None:
    sweep = tmp_path / "sweep"
    res = run_cli_subprocess(["certify", "-m", "hydra/launcher=local", *ARGS, "certify.shard=0,1",
                              "certify.num_shards=2", f"model.checkpoint={tiny_model}", f"hydra.sweep.dir={sweep}",
                              f"outputs_dir={tmp_path}"], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    full = _run(tmp_path, "full", model=tiny_model)
    merged = run_cli_subprocess(["merge", str(sweep)], tmp_path)
    assert merged.returncode == 0, merged.stderr
    pd.testing.assert_frame_equal(read_rows(sweep / "merged" / "certify.csv"), read_rows(full / "certify.csv"))


def test_submitit_local_failing_job_is_reported_in_one_line(tmp_path, tiny_model) -> None:
    """A stage that fails inside a launcher job: the sweep waits for the other job, then names the failed one
    (its overrides and rsbench's one-line error), with no traceback, exit 1."""
    sweep = tmp_path / "sweep"
    res = run_cli_subprocess(["certify", "-m", "hydra/launcher=local", *ARGS, "certify.n=300,0",
                              f"model.checkpoint={tiny_model}", f"hydra.sweep.dir={sweep}",
                              f"outputs_dir={tmp_path}"], tmp_path)
    assert res.returncode == 1, res.stderr[-2000:]
    assert "rsbench certify: error: 1 sweep job(s) failed:" in res.stderr, res.stderr[-2000:]
    (line,) = [ln.strip() for ln in res.stderr.splitlines() if ln.strip().startswith("job ")]
    assert "certify.n=0" in line and "FAILED: " in line and "must be an integer >= 1" in line, line
    assert "Traceback" not in res.stderr and "rsbench merge --missing" in res.stderr
    (good,) = [p for p in sweep.glob("*/certify.csv") if "certify.n-300" in p.parent.name]
    assert len(pd.read_csv(good)) == 12


def test_merge_missing_lists_only_incomplete_shards(tmp_path, tiny_model, capsys) -> None:
    from rsbench import cli

    shards = [_run(tmp_path, f"s{i}", f"certify.shard={i}", "certify.num_shards=4", model=tiny_model) for i in range(3)]
    cli.main(["merge", "--missing", *map(str, shards)])
    out = capsys.readouterr().out
    assert "shard 3 of 4: never started" in out and "shard 0" not in out and "certify.shard=3" in out
    csv = shards[1] / "certify.csv"
    csv.write_text("".join(csv.read_text().splitlines(keepends=True)[:2]))
    cli.main(["merge", "--missing", *map(str, shards)])
    out = capsys.readouterr().out
    assert "shard 1 of 4: 2 of 3 rows missing" in out and out.strip().endswith("certify.shard=1,3")
    assert "certify.num_shards=4" in out.strip().splitlines()[-1]


def test_slurm_timeout_too_short_for_the_signal_delay_is_refused(tmp_path, capsys) -> None:
    """SLURM may send the requeue signal up to 60 s before signal_delay_s (sbatch(1)); a limit that leaves
    the job no time to start before that could kill it with no requeue (CI saw one signalled after 2 s)."""
    from rsbench import cli
    from rsbench.config_check import check_slurm_timing

    with pytest.raises(SystemExit) as info:
        cli.main(["certify", "-m", "hydra/launcher=slurm", "hydra.launcher.timeout_min=2", f"outputs_dir={tmp_path}"])
    assert info.value.code == 2
    assert "timeout_min=2 is too short for signal_delay_s=120" in capsys.readouterr().err
    conf = str(REPO / "conf")
    launch = ["hydra/launcher=slurm", "hydra.launcher.signal_delay_s=30"]
    with pytest.raises(RsbenchError, match="use timeout_min >= 2"):
        check_slurm_timing(conf, [*launch, "hydra.launcher.timeout_min=1"])  # 60 s < 30 + 60 + 30
    check_slurm_timing(conf, [*launch, "hydra.launcher.timeout_min=2"])  # 120 s: accepted
    check_slurm_timing(conf, ["hydra.launcher.timeout_min=1"])  # not a SLURM launch: nothing to check


def test_threads_follow_slurm_cpus_per_task(monkeypatch) -> None:
    import torch

    from rsbench.runtime import threads_from_slurm

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
        assert threads_from_slurm() == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("SLURM_CPUS_PER_TASK", "x")
        assert threads_from_slurm() is None
    finally:
        torch.set_num_threads(before)
