"""Allocator tuning: applied once per process, and the user's own choice wins."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CODE = "from rsbench.runtime import tune_allocator; print(tune_allocator(), tune_allocator())"


def _run(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "RSBENCH_TUNE"))}
    return subprocess.run([sys.executable, "-c", CODE], env={**clean, **env}, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_tuned_by_default_and_skipped_when_asked() -> None:
    import ctypes.util

    if "musl" in (ctypes.util.find_library("c") or ""):
        pytest.skip("musl has no mallopt")
    assert _run() == "True True"
    assert _run(RSBENCH_TUNE_MALLOC="0") == "False False"
    assert _run(MALLOC_MMAP_THRESHOLD_="262144") == "False False"
