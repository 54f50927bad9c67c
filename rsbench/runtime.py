"""Process settings for fast, steady CPU inference: glibc's allocator keeps batch-sized buffers.

glibc serves every allocation above its mmap threshold (128 KiB at start, raised as large blocks are
freed, up to 32 MiB) with fresh pages from the kernel and hands the top of the heap back above its
trim threshold. A forward pass allocates and frees batch-sized activations every time, so, depending
on what the process did before, each pass can page-fault its buffers in anew: measured on this
project's machine, a small MNIST CNN ran at about 16,000 samples/s in a fresh process and at 31,000
once the thresholds were large (and batch 400 varied between 42 and 75 µs per sample, against a
steady 39). Fixing both thresholds high makes freed buffers reused, the effect of the jemalloc or
tcmalloc preload that PyTorch's CPU tuning guide recommends, without a dependency. Memory stays flat
in the number of samples (buffers are reused, not accumulated).

Skipped when the user chose for themselves (``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` set),
when ``RSBENCH_TUNE_MALLOC=0``, and where glibc's ``mallopt`` is not available (macOS, musl).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>
MMAP_THRESHOLD = 256 * 2**20  # allocations below this come from the (reused) heap
TRIM_THRESHOLD = 2**30        # free heap memory kept for reuse before any is returned to the kernel

_done: bool | None = None


def tune_allocator() -> bool:
    """Set glibc's mmap and trim thresholds once per process; True when they are in effect."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("RSBENCH_TUNE_MALLOC", "1").lower() in ("0", "off", "false", "no"):
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done


def threads_from_slurm() -> int | None:
    """Use as many torch threads as SLURM gave this task (``SLURM_CPUS_PER_TASK``), not the node's core count;
    None (and nothing changed) outside SLURM or when the value is not a positive integer."""
    value = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if not value.isdigit() or int(value) < 1:
        return None
    import torch

    torch.set_num_threads(int(value))
    return int(value)
