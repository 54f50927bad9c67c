"""Per-point host work of CERTIFY, this tree vs an earlier commit, side by side in one run.

The base model is one linear layer on MNIST-sized inputs, so a point's time is almost all rsbench's own
work around the forward (seed hashing, noise, counting, bounds, radius): the part that limits small models
on a GPU. Each pair runs the same timing in two fresh processes, one importing `rsbench` from COMMIT
(`git archive`) and one from this tree, alternating which goes first; every process certifies `--points`
points one at a time (n0 = 100) after an unrecorded warm-up pass. Prints ms per point for each n, the median
old / new time ratio with its min-max, and whether the rows (radius, p_lower, ...) are identical.
Run: `python scripts/bench_host.py 5146c30` (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TIMING = r"""
import hashlib, json, sys, time, torch
import rsbench
from rsbench.certify.sampling import PointSampler
from rsbench.methods.gaussian import GaussianSmoothing
from rsbench.runtime import tune_allocator
tune_allocator()  # as every stage does
points, ns = int(sys.argv[1]), [int(n) for n in sys.argv[2:]]
torch.manual_seed(0)
torch.set_num_threads(1)
model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
method = GaussianSmoothing(0.25)
xs = [torch.rand(1, 28, 28) for _ in range(points)]
def run(n):
    return [method.certify(PointSampler(model, method.noise, x, i, 10, 102_400, 0, None, False, None), 100, n, 0.001)
            for i, x in enumerate(xs)]
out = {}
for n in ns:
    run(n)
    start = time.perf_counter()
    rows = run(n)
    out[n] = [(time.perf_counter() - start) / points * 1e3, hashlib.md5(repr(rows).encode()).hexdigest()]
out["from"] = rsbench.__file__
print(json.dumps(out))
"""


def export(commit: str, root: Path) -> Path:
    """The ``rsbench`` package as it was at ``commit``, unpacked into ``root``."""
    archive = subprocess.run(["git", "archive", commit, "rsbench"], cwd=REPO, check=True, capture_output=True)
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(root, filter="data")
    return root


def timed(tree: Path, points: int, ns: list[int]) -> dict[str, list]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    res = subprocess.run([sys.executable, "-c", TIMING, str(points), *map(str, ns)], env=env, check=True,
                         capture_output=True, text=True, cwd=tree)  # cwd leads sys.path for -c
    out = json.loads(res.stdout)
    if not out.pop("from").startswith(str(tree)):
        raise SystemExit(f"the timing imported rsbench from outside {tree}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("commit")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--points", type=int, default=200)
    ap.add_argument("--n", type=int, nargs="+", default=[100, 1000])
    args = ap.parse_args()
    scratch = tempfile.TemporaryDirectory(prefix="rsbench-bench-host-")  # removed when the script ends
    old_tree = export(args.commit, Path(scratch.name))
    runs: dict[str, list[dict[str, list]]] = {"old": [], "new": []}
    for i in range(args.pairs):
        for side in (("old", "new") if i % 2 == 0 else ("new", "old")):
            runs[side].append(timed(old_tree if side == "old" else REPO, args.points, args.n))
    for n in map(str, args.n):
        old_ms = [r[n][0] for r in runs["old"]]
        new_ms = [r[n][0] for r in runs["new"]]
        ratios = [o / w for o, w in zip(old_ms, new_ms, strict=True)]
        same = len({r[n][1] for r in runs["old"] + runs["new"]}) == 1
        print(f"n={n:>6}: {args.commit} {statistics.median(old_ms):.3f} ms/point, this tree "
              f"{statistics.median(new_ms):.3f} ms/point; old / new {statistics.median(ratios):.2f} "
              f"[{min(ratios):.2f}-{max(ratios):.2f}] ({args.pairs} pairs); rows identical: {same}")


if __name__ == "__main__":
    main()
