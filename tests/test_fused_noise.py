"""The fused Gaussian noise kernel (rsbench/certify/fused_noise.py), run by Triton's interpreter on the CPU:
its draws are N(0, 1), seeded per block, and give single-point counts for several points at once.
tests/test_cuda.py runs the same checks on the compiled kernel when a GPU is there."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton (installed with torch on Linux)")
def test_fused_noise_under_the_triton_interpreter() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)])}
    done = subprocess.run([sys.executable, str(HERE / "fused_checks.py")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fused noise checks passed" in done.stdout
