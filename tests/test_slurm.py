"""A real SLURM in the tests, with job accounting (slurmdbd): sweeps through hydra/launcher=slurm.

Covers a 2-shard sweep that merges to the local run, a failing job, a killed job followed by a relaunch of
only the incomplete shard, and a job that hits its time limit and is requeued. Needs a running cluster:
`bash scripts/slurm_local_cluster.sh` (single node, loopback), or `make slurm-test`. Marked `slurm`, so the
default suite skips it.
"""

from __future__ import annotations

import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import TINY_CERTIFY, read_rows, run_cli, run_cli_subprocess

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(not shutil.which("sacct"), reason="no SLURM (run: bash scripts/slurm_local_cluster.sh)"),
]

SMALL_JOBS = ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1",
              "hydra.launcher.mem_gb=2"]


def _slurm_up() -> bool:
    res = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    acct = subprocess.run(["sacct", "-n", "-X", "-S", "now"], capture_output=True, text=True)
    return res.returncode == 0 and any(s in res.stdout for s in ("idle", "mixed")) and acct.returncode == 0


@pytest.fixture(autouse=True)
def _cluster() -> None:
    if not _slurm_up():
        pytest.skip("no SLURM cluster with accounting (run: bash scripts/slurm_local_cluster.sh)")


def _args(tmp_path: Path, model: Path, *extra: str) -> list[str]:
    """The tiny certify run (12 points by default); ``extra`` overrides its settings."""
    keys = {e.split("=", 1)[0] for e in extra}
    base = [a for a in [*TINY_CERTIFY, "certify.skip=25"] if a.split("=", 1)[0] not in keys]
    return [*base, f"model.checkpoint={model}", f"outputs_dir={tmp_path}", *extra]


def _local(tmp_path: Path, model: Path, *extra: str) -> pd.DataFrame:
    run_cli(["certify", *_args(tmp_path, model, *extra), f"hydra.run.dir={tmp_path / 'local'}"], tmp_path)
    return read_rows(tmp_path / "local" / "certify.csv")


def _job_dirs(sweep: Path) -> list[str]:
    """Jobs submitted (array tasks ``<id>_<task>`` and single jobs ``<id>``), one ``*_submitted.pkl`` each."""
    return sorted(p.parent.name for p in (sweep / ".submitit").glob("*/*_submitted.pkl"))


def test_slurm_two_shard_sweep_merges_to_local_run(tmp_path, tiny_model) -> None:
    sweep = tmp_path / "sweep"
    res = run_cli_subprocess(["certify", "-m", *SMALL_JOBS, *_args(tmp_path, tiny_model), "certify.shard=0,1",
                              "certify.num_shards=2", f"hydra.sweep.dir={sweep}",
                              "hydra.launcher.timeout_min=20"], tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert len(list((sweep / ".submitit").glob("*/*_log.out"))) == 2  # two SLURM array tasks ran
    merged = run_cli_subprocess(["merge", str(sweep)], tmp_path)
    assert merged.returncode == 0, merged.stderr
    pd.testing.assert_frame_equal(read_rows(sweep / "merged" / "certify.csv"), _local(tmp_path, tiny_model))
    assert len(pd.read_csv(sweep / "merged" / "certify.csv")) == 12


def test_slurm_failing_job_is_reported_and_the_others_finish(tmp_path, tiny_model) -> None:
    """certify.n=300,0: the n=0 job fails validation. The sweep waits for the other job, then names the failed
    one with rsbench's one-line error, and ends (it used to wait forever)."""
    sweep = tmp_path / "sweep"
    res = run_cli_subprocess(["certify", "-m", *SMALL_JOBS, *_args(tmp_path, tiny_model, "certify.n=300,0"),
                              f"hydra.sweep.dir={sweep}", "hydra.launcher.timeout_min=20"], tmp_path)
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]
    err = res.stderr
    assert "rsbench certify: error: 1 sweep job(s) failed:" in err, err[-3000:]
    failed = [ln for ln in err.splitlines() if ln.strip().startswith("job ")]
    assert len(failed) == 1 and "certify.n=0" in failed[0] and "FAILED" in failed[0], err[-3000:]
    assert "certify.n" in failed[0].split("FAILED: ", 1)[1]  # the stage's own message, not a trace
    assert "Traceback" not in err and "merge --missing" in err
    done = [p for p in sweep.glob("*/certify.csv") if "certify.n-300" in p.parent.name]
    assert len(done) == 1 and len(pd.read_csv(done[0])) == 12  # the good job was waited for and finished


def test_slurm_refused_submission_is_one_line(tmp_path, tiny_model) -> None:
    """The slurm preset's gpus_per_node=1 on this CPU-only cluster: sbatch refuses; one line, exit 2."""
    res = run_cli_subprocess(["certify", "-m", *SMALL_JOBS, "hydra.launcher.gpus_per_node=1",
                              *_args(tmp_path, tiny_model), f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    assert res.returncode == 2, res.stdout[-3000:] + res.stderr[-3000:]
    lines = res.stderr.strip().splitlines()
    assert lines[-1].startswith("rsbench certify: error: the cluster refused the submission: "), lines
    assert "gpus_per_node=0" in lines[-1] and "Traceback" not in res.stderr


def _wait_for_rows(csv_glob: tuple[Path, str], rows: int, proc: subprocess.Popen, limit_s: float = 300) -> Path:
    root, pattern = csv_glob
    deadline = time.time() + limit_s
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        for csv in root.glob(pattern):
            if len(csv.read_text().splitlines()) > rows:  # header + rows
                return csv
        time.sleep(0.2)
    raise AssertionError(f"no {pattern} with {rows} rows under {root} within {limit_s} s")


def _kill_task(task: int) -> None:
    """SIGKILL every process of array task ``task`` at once, as the OOM killer or a node failure would
    (``scancel`` would send SIGTERM first, which submitit bypasses, and the task could still finish)."""
    jobs = subprocess.run(["squeue", "-h", "-o", "%i %A"], capture_output=True, text=True).stdout.splitlines()
    raw = [line.split()[1] for line in jobs if line.split()[0].endswith(f"_{task}")]
    assert raw, jobs
    listed = subprocess.run(["scontrol", "listpids", raw[0]], capture_output=True, text=True, check=True)
    pids = [int(line.split()[0]) for line in listed.stdout.splitlines()[1:] if line.split()[0].isdigit()]
    assert pids, listed.stdout
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_slurm_killed_job_then_relaunch_only_the_incomplete_shard(tmp_path, tiny_model) -> None:
    """kill -9 one array task mid-run: the sweep reports it as killed; `merge --missing` names only that shard
    and prints the relaunch command; running it submits one job, and the merge equals the local run."""
    sweep = tmp_path / "sweep"
    slow = ["certify.n=1000000", "certify.batch=4096"]  # about a second per point, so the kill lands mid-run
    cmd = ["certify", "-m", *SMALL_JOBS, *_args(tmp_path, tiny_model, *slow), "certify.shard=0,1",
           "certify.num_shards=2", f"hydra.sweep.dir={sweep}", "hydra.launcher.timeout_min=20"]
    proc = subprocess.Popen([sys.executable, "-m", "rsbench.cli", *cmd], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        _wait_for_rows((sweep, "*certify.shard-1*/certify.csv"), 1, proc)
        _kill_task(1)
        _out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err[-3000:]
    failed = [ln for ln in err.splitlines() if ln.strip().startswith("job ")]
    assert len(failed) == 1 and "certify.shard=1" in failed[0] and "killed" in failed[0], err[-3000:]
    missing = run_cli_subprocess(["merge", "--missing", str(sweep)], tmp_path)
    assert missing.returncode == 0, missing.stderr
    lines = missing.stdout.strip().splitlines()
    assert lines[0].startswith("shard 1 of 2:") and not any(ln.startswith("shard 0") for ln in lines), lines
    relaunch = shlex.split(lines[-1].split(": ", 1)[1])
    assert relaunch[:3] == ["rsbench", "certify", "-m"] and "hydra/launcher=slurm" in relaunch
    before = _job_dirs(sweep)
    res = run_cli_subprocess(relaunch[1:], tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert len(set(_job_dirs(sweep)) - set(before)) == 1  # only shard 1 paid for an allocation
    merged = run_cli_subprocess(["merge", str(sweep)], tmp_path)
    assert merged.returncode == 0, merged.stderr
    pd.testing.assert_frame_equal(read_rows(sweep / "merged" / "certify.csv"), _local(tmp_path, tiny_model, *slow))


def _single_job_id(sweep: Path) -> str:
    (job,) = _job_dirs(sweep)
    return job


def _attempts(job: str, settle_s: float = 120) -> list[str]:
    """The states of every attempt of ``job`` in SLURM's accounting, once the last one has ended: slurmdbd
    records a job's end some seconds after the job has ended (CI saw the last attempt still RUNNING when
    queried right after submitit had its result)."""
    deadline = time.monotonic() + settle_s
    while True:
        states = subprocess.run(["sacct", "-D", "-X", "-n", "-P", "-o", "State", "-j", job],
                                capture_output=True, text=True, check=True).stdout.split()
        ended = bool(states) and states[-1] not in ("PENDING", "RUNNING", "REQUEUED", "COMPLETING")
        if ended or time.monotonic() > deadline:
            return states
        time.sleep(1)


def _requeued_mid_run(tmp_path: Path, args: list[str], rows_file: str, sizing: tuple) -> Path:
    """Run ``rsbench <args>`` as a one-job SLURM sweep, send the time-limit signal (``scancel --signal=USR2``)
    once ``rows_file`` has two rows, and check the sweep succeeds after one requeue (submitit logged it; the
    job's attempts are REQUEUED ... COMPLETED). Returns the job's run dir."""
    sweep = tmp_path / "sweep"
    cmd = [args[0], "-m", *SMALL_JOBS, *args[1:], f"hydra.sweep.dir={sweep}", "hydra.launcher.timeout_min=20",
           "hydra.launcher.max_num_timeout=3"]
    proc = subprocess.Popen([sys.executable, "-m", "rsbench.cli", *cmd], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        found = _wait_for_rows((sweep, f"*/{rows_file}"), 2, proc)
        subprocess.run(["scancel", "--signal=USR2", _single_job_id(sweep)], check=True)
        _out, err = proc.communicate(timeout=1500)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    logs = "".join(p.read_text() for p in (sweep / ".submitit").glob("*/*_log.err"))
    assert "requeu" in logs.lower(), (sizing, logs[-3000:])  # submitit logged the requeue
    attempts = _attempts(_single_job_id(sweep))
    assert attempts[0] == "REQUEUED" and attempts[-1] == "COMPLETED", attempts  # two attempts, one result
    return found.parent


def test_slurm_timeout_is_requeued_and_resumes(tmp_path, tiny_model) -> None:
    """The time-limit signal mid-run (submitit's SIGUSR2, sent as SLURM sends it at `signal_delay_s`): submitit
    requeues the job, and certify resumes from its CSV: the sweep succeeds and the rows equal a local run
    (none lost, none twice).

    The signal is sent with `scancel --signal=USR2` once the job has written rows, not left to a 1-minute
    time limit: SLURM may send that signal up to 60 s early (sbatch(1), --signal), and CI saw it land 2 s
    into a job, before submitit's handler existed. The workload is sized from a measured per-point time to
    about 30 s, so the signal lands mid-run. SLURM holds a requeued job for a few minutes before it restarts."""
    slow = ["certify.n=1000000", "certify.batch=4096"]
    probe = tmp_path / "probe"
    run_cli(["certify", *_args(tmp_path, tiny_model, *slow, "certify.skip=1", "certify.max=3"),
             f"hydra.run.dir={probe}"], tmp_path)
    per_point = float(pd.read_csv(probe / "certify.csv")["time_s"].median())
    points = min(400, max(10, math.ceil(30.0 / per_point)))
    slow += ["certify.skip=1", f"certify.max={points}"]  # idx 0 .. points - 1
    run = _requeued_mid_run(tmp_path, ["certify", *_args(tmp_path, tiny_model, *slow)], "certify.csv",
                            (points, per_point))
    assert len(pd.read_csv(run / "certify.csv")) == points
    pd.testing.assert_frame_equal(read_rows(run / "certify.csv"), _local(tmp_path, tiny_model, *slow))


def test_slurm_training_timeout_is_requeued_and_resumes(tmp_path) -> None:
    """The time-limit signal in the middle of `rsbench train` on SLURM: submitit requeues the job, training
    resumes from its last epoch's checkpoint, and the weights equal a local uninterrupted run, bit for bit
    (CPU), with each epoch logged once. Sized from a measured epoch time to about 30 s, as above."""
    import torch

    base = ["train", "model=cnn", "model.params.channels=[4,8]", "model.params.hidden=16", "train.max_examples=1280",
            f"outputs_dir={tmp_path}"]
    probe = tmp_path / "probe"
    run_cli([*base, "train.epochs=3", f"hydra.run.dir={probe}"], tmp_path)
    per_epoch = float(pd.read_csv(probe / "train_log.csv")["time_s"].median())
    epochs = min(2000, max(10, math.ceil(30.0 / per_epoch)))
    args = [*base, f"train.epochs={epochs}"]
    run = _requeued_mid_run(tmp_path, args, "train_log.csv", (epochs, per_epoch))
    assert "resuming training from" in (run / "train.log").read_text()
    local = tmp_path / "local"  # one thread, as the job had (cpus_per_task=1): the same kernels, the same sums
    done = subprocess.run([sys.executable, "-m", "rsbench.cli", *args, f"hydra.run.dir={local}"], cwd=tmp_path,
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    a = torch.load(run / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(local / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert list(pd.read_csv(run / "train_log.csv")["epoch"]) == list(range(1, epochs + 1))
