"""Several test points per forward batch: how much each way of pooling them buys, side by side in one run.

For a one-layer model on MNIST-sized inputs at n = 100 (a point's time is rsbench's own work) and the MNIST
CNN at n = 1,000, CERTIFY of K points one at a time vs K at a time pooled two ways
(`bench.certify_throughput.multipoint_rates`): "request", as `certify.points_per_batch=K` runs them (whole
Monte Carlo requests pooled: one noise fill, forward stream and count per group), and "forward" (each point
draws its own noise; only the forward calls are concatenated). Prints the median multi / single ratio of
--repeats paired measurements with the min-max. K defaults to 16 on CPU and 64 on CUDA; the batch is
`bench certify`'s on CPU (2,000 / 400) and 102,400 on CUDA.
Run: `python scripts/bench multipoint [--device cuda]` (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import argparse

import torch

from bench.certify_throughput import multipoint_rates
from bench.harness import MNIST, ratio, spread
from rsbench.models import build_model
from rsbench.runtime import tune_allocator


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python scripts/bench multipoint", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--points", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.5, help="seconds per timed measurement")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    k = args.points or (64 if dev.type == "cuda" else 16)
    tune_allocator()  # as every stage does; without it the main thread's CNN forward ran 1.6x slower here
    torch.manual_seed(0)
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval().to(dev)
    cnn = build_model("cnn", MNIST, {}).eval().to(dev).to(memory_format=torch.channels_last)
    gpu = dev.type == "cuda"  # batch sizes: `bench certify`'s on CPU, room for every pooled point on a GPU
    for name, model, n, batch, channels_last in (("one-layer", linear, 100, 102_400 if gpu else 2_000, False),
                                                 ("mnist_cnn", cnn, 1_000, 102_400 if gpu else 400, True)):
        for pooling in ("forward", "request"):
            pairs = [multipoint_rates(model, MNIST, batch, n, k, args.min_time, channels_last, None, pooling, dev)
                     for _ in range(args.repeats)]
            singles, multis = [s for s, _ in pairs], [m for _, m in pairs]
            print(f"{name:10s} n={n:5d} {k} points, {pooling:7s} pooling / one at a time: {ratio(multis, singles)} "
                  f"({spread(multis).median:.0f} vs {spread(singles).median:.0f} evaluations/s, {args.device})")
