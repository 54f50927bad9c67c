"""Per-point host work of CERTIFY, this tree vs an earlier commit, side by side in one run.

The base model is one linear layer on MNIST-sized inputs, so a point's time is almost all rsbench's own
work around the forward (seed hashing, noise, counting, bounds, radius): the part that limits small models
on a GPU. Each pair runs the same timing in two fresh processes, one importing `rsbench` from COMMIT
(`git archive`) and one from this tree, alternating which goes first; every process certifies `--points`
points one at a time (n0 = 100) after an unrecorded warm-up pass. Prints ms per point for each n, the median
paired old / new time ratio with its min-max, and whether the rows (radius, p_lower, ...) are identical.
Run: `python scripts/bench host 5146c30` (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from bench.harness import REPO, fresh_process, interleaved, ratio, spread, tree_at

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


def timed(tree: Path, points: int, ns: list[int]) -> dict[str, list]:
    """One fresh process importing ``rsbench`` from ``tree``: {n: [ms per point, digest of the rows]}."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = fresh_process(["-c", TIMING, str(points), *map(str, ns)], env, cwd=tree)  # cwd leads sys.path for -c
    if not out.pop("from").startswith(str(tree)):
        raise SystemExit(f"the timing imported rsbench from outside {tree}")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python scripts/bench host", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("commit")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--points", type=int, default=200)
    ap.add_argument("--n", type=int, nargs="+", default=[100, 1000])
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rsbench-bench-host-") as scratch:
        old_tree = tree_at(args.commit, Path(scratch))
        runs = interleaved({"old": lambda: timed(old_tree, args.points, args.n),
                            "new": lambda: timed(REPO, args.points, args.n)}, args.pairs, alternate=True)
    for n in map(str, args.n):
        old_ms, new_ms = [r[n][0] for r in runs["old"]], [r[n][0] for r in runs["new"]]
        same = len({r[n][1] for r in runs["old"] + runs["new"]}) == 1
        print(f"n={n:>6}: {args.commit} {spread(old_ms).median:.3f} ms/point, this tree "
              f"{spread(new_ms).median:.3f} ms/point; old / new {ratio(old_ms, new_ms)} ({args.pairs} pairs); "
              f"rows identical: {same}")
