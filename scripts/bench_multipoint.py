"""Several test points per forward batch: how much each way of pooling them buys, side by side in one run.

For a one-layer model on MNIST-sized inputs at n = 100 (a point's time is rsbench's own work) and the MNIST
CNN at n = 1,000 (the issue's case), CERTIFY of K points one at a time vs K at a time pooled two ways
(scripts/bench.py's multipoint_rates): "request", as `certify.points_per_batch=K` runs them (whole Monte
Carlo requests pooled: one noise fill, forward stream and count per group), and "forward" (each point draws
its own noise; only the forward calls are concatenated). Prints the median multi / single ratio of
--repeats paired measurements with the min-max. K defaults to 16 on CPU and 64 on CUDA; the batch is
scripts/bench.py's on CPU (2,000 / 400) and 102,400 on CUDA.
Run: `python scripts/bench_multipoint.py [--device cuda]` (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

from rsbench.models import build_model  # noqa: E402
from rsbench.runtime import tune_allocator  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--points", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.5, help="seconds per timed measurement")
    args = ap.parse_args()
    bench.DEVICE = dev = torch.device(args.device)
    k = args.points or (64 if dev.type == "cuda" else 16)
    tune_allocator()  # as every stage does; without it the main thread's CNN forward ran 1.6x slower here
    torch.manual_seed(0)
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval().to(dev)
    cnn = build_model("cnn", bench.MNIST, {}).eval().to(dev).to(memory_format=torch.channels_last)
    gpu = dev.type == "cuda"  # batch sizes: scripts/bench.py's on CPU, room for every pooled point on a GPU
    for name, model, n, batch, channels_last in (("one-layer", linear, 100, 102_400 if gpu else 2_000, False),
                                                 ("mnist_cnn", cnn, 1_000, 102_400 if gpu else 400, True)):
        for pooling in ("forward", "request"):
            pairs = [bench.multipoint_rates(model, bench.MNIST, batch, n, k, args.min_time, channels_last, None,
                                            pooling) for _ in range(args.repeats)]
            ratios = [multi / single for single, multi in pairs]
            print(f"{name:10s} n={n:5d} {k} points, {pooling:7s} pooling / one at a time: "
                  f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}] "
                  f"({statistics.median([m for _, m in pairs]):.0f} vs {statistics.median([s for s, _ in pairs]):.0f}"
                  f" evaluations/s, {args.device})")


if __name__ == "__main__":
    main()
