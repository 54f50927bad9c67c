"""Sweeps through Hydra's submitit launcher (SLURM or local processes): a failed submission or job is reported.

Upstream, the launcher returns ``[job.results()[0] for job in jobs]``: the first failed job raises a
multi-line submitit trace, later jobs are neither waited for nor reported, and an ``sbatch`` refusal (for
example ``gpus_per_node=1`` on a CPU-only cluster) is a traceback. :func:`install` wraps its ``launch`` so that

* a refused submission ends the command with one line quoting ``sbatch``'s own error;
* a failed job makes the command wait for every other job of the sweep, then print one line per failed
  job (its id, its sweep overrides, its SLURM state and rsbench's one-line error, or "killed"), and the
  command that re-runs only the incomplete shards (``rsbench merge --missing``); exit status 1.

The wrapper changes no successful sweep. It needs job accounting on SLURM (``sacct``), as submitit does to
learn that a job ended at all (scripts/slurm_local_cluster.sh starts slurmdbd for that).
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

_ERROR_PREFIXES = ("JobFailed: ", "RsbenchError: ")


def install() -> None:
    """Wrap the submitit launcher's ``launch`` (idempotent; a no-op without the plugin)."""
    try:
        from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
    except ImportError:
        return
    if getattr(BaseSubmititLauncher.launch, "_rsbench_reports", False):
        return
    BaseSubmititLauncher.launch = _reporting(BaseSubmititLauncher.launch)


def _reporting(launch: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(self: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        started = time.time()
        try:
            returns = launch(self, job_overrides, initial_job_idx)
        except Exception as exc:
            from submitit.core.utils import UncompletedJobError

            if isinstance(exc.__cause__, subprocess.CalledProcessError):  # sbatch refused the submission
                print(f"rsbench {_stage()}: error: the cluster refused the submission: {_last_line(str(exc))}"
                      f" (see docs/CLUSTER.md; on a CPU-only cluster pass hydra.launcher.gpus_per_node=0)",
                      file=sys.stderr, flush=True)
                raise SystemExit(2) from None
            if not isinstance(exc, UncompletedJobError):
                raise
            _report(self, started, _last_line(str(exc)))  # a job died without a result
        if any(_failed(r) for r in returns):  # a stage raised inside its job; every job has ended
            _report(self, started, "a job's stage failed")
        return returns

    wrapped._rsbench_reports = True  # type: ignore[attr-defined]
    return wrapped


def _report(launcher: Any, started: float, fallback: str) -> NoReturn:
    """Print one line per failed job of the sweep (after all have ended) and the relaunch hint; exit 1."""
    lines = failed_jobs(str(launcher.params["submitit_folder"]), launcher._EXECUTOR, started) or [fallback]
    print(f"rsbench {_stage()}: error: {len(lines)} sweep job(s) failed:", file=sys.stderr)
    for line in lines:
        print(f"  {line}", file=sys.stderr)
    print(f"re-run only the incomplete shards: rsbench merge --missing {launcher.config.hydra.sweep.dir} "
          "prints the command", file=sys.stderr, flush=True)
    raise SystemExit(1)


def failed_jobs(folder: str, executor: str, since: float) -> list[str]:
    """One line per failed job submitted after ``since`` under submitit ``folder`` (``.../%j``), after
    waiting for every such job to end: ``job <id> (<overrides>): <state>: <error>``."""
    import submitit

    job_class = {"slurm": submitit.SlurmJob, "local": submitit.LocalJob}[executor]
    root = Path(folder.replace("%j", "x")).parent
    lines = []
    for job_dir in sorted(root.iterdir() if root.is_dir() else [], key=lambda p: p.name):
        submitted = job_dir / f"{job_dir.name}_submitted.pkl"
        if not submitted.is_file() or submitted.stat().st_mtime < since - 1:
            continue
        job = job_class(folder=folder, job_id=job_dir.name)
        error = job.exception()  # waits until the job has ended
        if error is None:
            result = job.result()  # Hydra's JobReturn: a stage's exception is caught inside the job
            if not _failed(result):
                continue
            state, message = "FAILED", _last_line(str(result._return_value))
        else:
            state, message = job.state, _job_error(str(error))
        lines.append(f"job {job_dir.name} ({_job_overrides(submitted)}): {state}: {message}")
    return lines


def _failed(job_return: Any) -> bool:
    from hydra.core.utils import JobStatus

    return getattr(job_return, "status", None) == JobStatus.FAILED


def _job_overrides(submitted: Path) -> str:
    """The sweep overrides that distinguish this job (our own submitit pickle, written by this sweep)."""
    try:
        with submitted.open("rb") as f:
            delayed = pickle.load(f)  # noqa: S301 - submitit's own file for a job this process submitted
        overrides = delayed.args[0]
        return " ".join(str(o) for o in overrides) or "no overrides"
    except Exception:  # noqa: BLE001 - only a label; the failure itself is still reported
        return "overrides unreadable"


def _job_error(text: str) -> str:
    """rsbench's one-line error from a job's trace, else "killed" for a job that left no result."""
    for line in reversed(text.splitlines()):
        for prefix in _ERROR_PREFIXES:
            if prefix in line:
                return line.split(prefix, 1)[1].strip()
    if "has not produced any output" in text or "killed" in text.lower():
        return "killed before it finished (no result written)"
    return _last_line(text)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not set(ln.strip()) <= {"-"}]
    return lines[-1] if lines else text.strip()


def _stage() -> str:
    name = Path(sys.argv[0]).name
    return name.removeprefix("rsbench-") if name.startswith("rsbench-") else "sweep"
