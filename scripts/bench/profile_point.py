"""Where one point's time goes: CERTIFY of the MNIST CNN one point at a time, timed and profiled (cProfile).

Prints ms per point at n = 1,000 and n = 100,000 (200 random points, after one warm-up pass each), then the
top functions by own time for a pass at n = 1,000, and the time to hash 64 points' block seeds one key at a
time and in one vectorised call (`block_seeds_many`). Run: `python scripts/bench profile [--device cuda]`
(docs/PERFORMANCE.md, multi-point section).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats

import torch

from bench.harness import MNIST, seconds
from rsbench.certify.sampling import PointSampler
from rsbench.certify.seeding import block_seeds, block_seeds_many
from rsbench.methods.gaussian import GaussianSmoothing
from rsbench.models import build_model


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python scripts/bench profile", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--points", type=int, default=200)
    ap.add_argument("--batch", type=int, default=102_400)
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    model = build_model("cnn", MNIST, {}).eval().to(dev).to(memory_format=torch.channels_last)
    method = GaussianSmoothing(0.25)
    xs = [torch.rand(1, 28, 28, device=dev) for _ in range(args.points)]

    def run(n: int) -> None:
        for i, x in enumerate(xs):
            method.certify(PointSampler(model, method.noise, x, i, 10, args.batch, 0, None, True, None), 100, n,
                           0.001)

    for n in (1000, 100_000):
        run(n)
        print(f"n = {n}: {seconds(lambda n=n: run(n), dev) / len(xs) * 1e3:.2f} ms per point ({dev})")
    profile = cProfile.Profile()
    profile.enable()
    run(1000)
    profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(20)
    keys = [(i, 1) for i in range(64)]
    for label, fn in (("one key at a time", lambda: [block_seeds(0, k, range(10)) for k in keys]),
                      ("vectorised", lambda: block_seeds_many(0, keys, range(10)))):
        ms = seconds(lambda fn=fn: [fn() for _ in range(20)]) / 20 * 1e3
        print(f"block seeds of 64 points x 10 blocks, {label}: {ms:.2f} ms")
