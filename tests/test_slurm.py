"""A real SLURM in the tests: a 2-shard certify sweep through hydra/launcher=slurm, merged, equals a local run.

Needs a running cluster: `bash scripts/slurm_local_cluster.sh` (single node, loopback), or `make slurm-test`.
Marked `slurm`, so the default suite skips it.
"""

from __future__ import annotations

import shutil
import subprocess

import pandas as pd
import pytest

from conftest import TINY_CERTIFY, read_rows, run_cli, run_cli_subprocess

pytestmark = pytest.mark.slurm


def _slurm_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    res = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return res.returncode == 0 and any(s in res.stdout for s in ("idle", "mixed"))


@pytest.mark.skipif(not _slurm_up(), reason="no SLURM cluster (run: bash scripts/slurm_local_cluster.sh)")
def test_slurm_two_shard_sweep_merges_to_local_run(tmp_path, tiny_model) -> None:
    args = [*TINY_CERTIFY, "certify.skip=25", f"model.checkpoint={tiny_model}", f"outputs_dir={tmp_path}"]
    sweep = tmp_path / "sweep"
    res = run_cli_subprocess(["certify", "-m", "hydra/launcher=slurm", *args, "certify.shard=0,1",
                              "certify.num_shards=2", f"hydra.sweep.dir={sweep}", "hydra.launcher.gpus_per_node=0",
                              "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2",
                              "hydra.launcher.timeout_min=20"], tmp_path, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    job_logs = list((sweep / ".submitit").glob("*/*_log.out"))
    assert len(job_logs) == 2  # two SLURM array tasks ran
    merged = run_cli_subprocess(["merge", str(sweep)], tmp_path)
    assert merged.returncode == 0, merged.stderr
    run_cli(["certify", *args, f"hydra.run.dir={tmp_path / 'local'}"], tmp_path)
    pd.testing.assert_frame_equal(read_rows(sweep / "merged" / "certify.csv"),
                                  read_rows(tmp_path / "local" / "certify.csv"))
    assert len(pd.read_csv(sweep / "merged" / "certify.csv")) == 12
