"""Compare a sequential certify run with a fixed-n run on the same test points (docs/PERFORMANCE.md).

Prints the mean base-model evaluations per point (n0 + samples used) and the certified accuracy at
r in {0, 0.25, 0.5, 0.75} for both, with the paired difference and its standard error (the same points
are certified by both, so the per-point differences are what varies).
usage: python scripts/bench sequential FIXED_RUN_DIR SEQUENTIAL_RUN_DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

RADII = (0.0, 0.25, 0.5, 0.75)


def report(fixed_dir: str, seq_dir: str) -> None:
    """Print the comparison of the two runs on their common points."""
    fixed = pd.read_csv(Path(fixed_dir) / "certify.csv").set_index("idx")
    seq = pd.read_csv(Path(seq_dir) / "certify.csv").set_index("idx")
    common = fixed.index.intersection(seq.index)
    fixed, seq = fixed.loc[common], seq.loc[common]
    n = len(common)
    evals_f = (fixed["n0"] + fixed["n_used"]).mean()
    evals_s = (seq["n0"] + seq["n_used"]).mean()
    print(f"{n} test points")
    print(f"mean base-model evaluations per point: fixed-n {evals_f:,.0f}, sequential {evals_s:,.0f} "
          f"({evals_f / evals_s:.1f}x fewer)")
    print(f"mean seconds per point: fixed-n {fixed['time_s'].mean():.3f}, sequential {seq['time_s'].mean():.3f}")
    print("| r | fixed-n | sequential | paired difference (seq - fixed) ± s.e. | points that differ |")
    print("|---|---|---|---|---|")
    for r in RADII:
        a = (fixed["correct"].astype(bool) & (fixed["radius"] >= r)).to_numpy(float)
        b = (seq["correct"].astype(bool) & (seq["radius"] >= r)).to_numpy(float)
        d = b - a
        se = d.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
        print(f"| {r:g} | {a.mean():.3f} | {b.mean():.3f} | {d.mean():+.3f} ± {se:.3f} | {int((d != 0).sum())} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python scripts/bench sequential", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fixed", help="the fixed-n certify run dir")
    ap.add_argument("sequential", help="the sequential certify run dir")
    args = ap.parse_args(argv)
    report(args.fixed, args.sequential)
