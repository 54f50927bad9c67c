"""The timing and pairing logic every benchmark shares, in one place.

Invariants the measurements rely on:
- **Side by side.** Arms of a comparison are measured in one run, interleaved repeat by repeat
  (``interleaved``), with the order alternated on odd repeats where ``alternate`` is set, so that a slower
  moment of a shared machine hits every arm alike. Ratios are **paired**: the ratio of each repeat's two
  measurements, summarised by the median and the min-max of those ratios (``ratio``), never the ratio of two
  medians.
- **Synchronised clocks.** On CUDA every timed call ends with ``torch.cuda.synchronize`` (``sync``), so a
  rate counts finished work, not queued kernels.
- **Fresh processes** where a process's history matters (the allocator, an older tree of the code):
  ``fresh_process`` runs one measurement per interpreter and reads its last stdout line as JSON.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import TypeVar

import pandas as pd
import torch

from rsbench.data.embedded import MNIST_MEAN, MNIST_STD
from rsbench.data.registry import DatasetSpec
from rsbench.data.torchvision_sets import CIFAR_MEAN, CIFAR_STD

REPO = Path(__file__).resolve().parents[2]
MNIST = DatasetSpec("mnist", "mnist", (1, 28, 28), 10, MNIST_MEAN, MNIST_STD)
CIFAR = DatasetSpec("cifar10", "cifar10", (3, 32, 32), 10, CIFAR_MEAN, CIFAR_STD)
CPU = torch.device("cpu")

T = TypeVar("T")


@dataclass(frozen=True)
class Spread:
    """A median with the min and max of the values it summarises."""

    median: float
    lo: float
    hi: float

    def __format__(self, spec: str) -> str:
        spec = spec or ".2f"
        return f"{self.median:{spec}} [{self.lo:{spec}}-{self.hi:{spec}}]"

    def range(self, spec: str = ".0f") -> str:
        """'lo-hi', as the CSV spread columns write it."""
        return f"{self.lo:{spec}}-{self.hi:{spec}}"


def spread(values: Sequence[float]) -> Spread:
    """Median, min and max of ``values`` (at least one)."""
    if not values:
        raise ValueError("spread() of no measurements")
    return Spread(statistics.median(values), min(values), max(values))


def paired_ratios(num: Sequence[float], den: Sequence[float]) -> list[float]:
    """num[i] / den[i] for each repeat i: the two arms of a repeat were measured side by side."""
    if len(num) != len(den):
        raise ValueError(f"unpaired measurements: {len(num)} vs {len(den)}")
    return [a / b for a, b in zip(num, den, strict=True)]


def ratio(num: Sequence[float], den: Sequence[float]) -> Spread:
    """The median and min-max of the paired ratios num / den."""
    return spread(paired_ratios(num, den))


def interleaved(arms: Mapping[str, Callable[[], T]], repeats: int, *, alternate: bool = False,
                warmup: bool = False) -> dict[str, list[T]]:
    """Call every arm once per repeat, in turn, and collect what each returns.

    ``alternate``: odd repeats run the arms in reverse order (for two arms: who goes first alternates).
    ``warmup``: one extra unrecorded round first (allocator, kernels, caches)."""
    names = list(arms)
    results: dict[str, list[T]] = {name: [] for name in names}
    for i in range(-1 if warmup else 0, repeats):
        order = names[::-1] if alternate and i % 2 else names
        for name in order:
            value = arms[name]()
            if i >= 0:
                results[name].append(value)
    return results


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(fn: Callable[[], object], samples: int, min_time: float, device: torch.device = CPU) -> float:
    """samples/s of ``fn()`` (which processes ``samples`` each call), repeated until ``min_time`` seconds have
    passed, after one warm-up call."""
    fn()
    sync(device)
    reps, t0 = 0, time.perf_counter()
    while True:
        fn()
        sync(device)
        reps += 1
        dt = time.perf_counter() - t0
        if dt >= min_time:
            return samples * reps / dt


def seconds(fn: Callable[[], object], device: torch.device = CPU) -> float:
    """Wall seconds of one call of ``fn()``."""
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def peak_reset(device: torch.device) -> None:
    """Reset the peak-memory counter: CUDA's peak allocated memory, or the process's VmHWM on Linux."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_mb(device: torch.device) -> float:
    """Peak memory since ``peak_reset``, in MiB (NaN where the platform does not say)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def fresh_process(args: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None) -> dict:
    """Run ``python *args`` in a new interpreter and return its last stdout line, parsed as JSON."""
    res = subprocess.run([sys.executable, *args], env=None if env is None else dict(env), cwd=cwd,
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"benchmark child failed (exit {res.returncode}): {res.stderr.strip()[-2000:]}")
    lines = res.stdout.strip().splitlines()
    if not lines:
        raise SystemExit("benchmark child printed nothing")
    return json.loads(lines[-1])


def tree_at(commit: str, root: Path) -> Path:
    """The ``rsbench`` package as it was at ``commit`` (``git archive``), unpacked into ``root``."""
    archive = subprocess.run(["git", "archive", commit, "rsbench"], cwd=REPO, capture_output=True)
    if archive.returncode != 0:
        raise SystemExit(f"cannot read commit {commit!r}: {archive.stderr.decode().strip()}")
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(root, filter="data")
    return root


def markdown(df: pd.DataFrame, two_places: Sequence[str] = ()) -> str:
    """A Markdown table of ``df``: floats in ``two_places`` columns with 2 decimals, other floats rounded."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(f"{v:.2f}" if c in two_places else (f"{v:.0f}" if isinstance(v, float)
                                                                          else str(v))
                                       for c, v in row.items()) + " |")
    return "\n".join(lines) + "\n"


def write_table(df: pd.DataFrame, out: Path, name: str, two_places: Sequence[str] = ()) -> list[Path]:
    """Write ``out/name.csv`` and ``out/name.md``; returns both paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.csv", out / f"{name}.md"]
    df.to_csv(paths[0], index=False)
    paths[1].write_text(markdown(df, two_places))
    return paths
