"""Shared test helpers: run the CLI in-process or as a subprocess, tiny-run overrides."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from rsbench import cli

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# A tiny but real run on the embedded dataset: 1 epoch MLP on 800 images, 6 test points.
TINY_TRAIN = ["model=mlp", "model.params.widths=[64]", "train.epochs=1", "train.max_examples=800"]
CERTIFY_SETTINGS = ["certify.n0=20", "certify.n=300", "certify.alpha=0.01", "certify.skip=50", "certify.max=300",
                    "certify.batch=128"]
TINY_CERTIFY = [*TINY_TRAIN, *CERTIFY_SETTINGS]


def run_cli(args: list[str], outputs: Path) -> None:
    """Run ``rsbench <args>`` in this process with results under ``outputs``."""
    cli.main([*args, f"outputs_dir={outputs}"])


def run_cli_subprocess(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``rsbench <args>`` as a child process, waited on to its end (no clock: a busy machine only takes longer)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "rsbench.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True)


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, what: str) -> None:
    """Wait until ``condition()`` holds while ``proc`` still runs: on the event, never on the clock, so a slow or
    busy machine makes a test longer but never fails it; a process that ends first fails the test."""
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the process ended (exit {proc.returncode}) before {what}")
        time.sleep(0.02)


def read_rows(csv_path: Path) -> pd.DataFrame:
    """A certify/predict CSV without its timing column, for exact comparisons."""
    return pd.read_csv(csv_path).drop(columns=["time_s"])


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """One tiny trained MLP checkpoint shared by the CLI tests."""
    out = tmp_path_factory.mktemp("tiny_model")
    cli.main(["train", *TINY_TRAIN, f"outputs_dir={out}", "hydra.run.dir=" + str(out / "run")])
    return out / "run" / "model.pt"
