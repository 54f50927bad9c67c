"""Forward throughput in a fresh process, glibc's default allocator thresholds vs rsbench's (rsbench/runtime.py).

Each measurement is its own fresh Python process (the allocator's state depends on the process's history,
which is the point), alternating tuned / default --repeats times, so both see the same machine load. Prints
samples/s (median and spread) and the paired ratio tuned / default per model and batch. Writes
outputs/bench/allocator.csv. Run: `python scripts/bench allocator` (in `make bench`).
"""

# nothing at module level may import torch: the child sets the allocator's thresholds before torch loads

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

CASES = [("mnist_cnn", 200), ("mnist_cnn", 400), ("cifar_resnet20", 100), ("cifar_resnet20", 400)]
ENTRY = Path(__file__).resolve().parent  # `python scripts/bench`


def child(name: str, batch: int, min_time: float) -> None:
    """One fresh-process measurement: set the allocator, build the model, time forward + argmax, print JSON."""
    from rsbench.runtime import tune_allocator

    tuned = tune_allocator()
    import torch

    from bench.certify_throughput import MODELS
    from bench.harness import rate
    from rsbench.models import build_model

    arch, spec, params = MODELS[name]
    torch.manual_seed(0)
    model = build_model(arch, spec, params).eval().to(memory_format=torch.channels_last)
    x = torch.rand(batch, *spec.shape).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        got = rate(lambda: model(x).argmax(1), batch, min_time)
    print(json.dumps({"tuned": tuned, "rate": got}))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python scripts/bench allocator", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=2.0)
    ap.add_argument("--out", type=Path, default=Path("outputs/bench"))
    ap.add_argument("--cases", default=None, help="comma-separated MODEL:BATCH (default: "
                                                  + ",".join(f"{m}:{b}" for m, b in CASES) + ")")
    ap.add_argument("--child", nargs=2, metavar=("MODEL", "BATCH"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child[0], int(args.child[1]), args.min_time)
        return
    import pandas as pd

    from bench.harness import fresh_process, interleaved, ratio, spread

    cases = [(m, int(b)) for m, b in (c.split(":") for c in args.cases.split(","))] if args.cases else CASES

    def measure(name: str, batch: int, setting: str) -> float:
        env = dict(os.environ, RSBENCH_TUNE_MALLOC="1" if setting == "tuned" else "0")
        got = fresh_process([str(ENTRY), "allocator", "--child", name, str(batch), "--min-time", str(args.min_time)],
                            env)
        if got["tuned"] != (setting == "tuned"):
            sys.exit(f"allocator setting not applied as asked ({setting}); is MALLOC_*_ set?")
        return got["rate"]

    rows = []
    for name, batch in cases:
        rates = interleaved({s: lambda s=s, name=name, batch=batch: measure(name, batch, s)
                             for s in ("default", "tuned")}, args.repeats)
        default, tuned, r = spread(rates["default"]), spread(rates["tuned"]), ratio(rates["tuned"], rates["default"])
        rows.append({"model": name, "batch": batch, "default_samples_s": default.median,
                     "default_spread": default.range(), "tuned_samples_s": tuned.median, "tuned_spread": tuned.range(),
                     "ratio": r.median, "ratio_spread": r.range(".2f")})
        print(f"{name:16s} batch {batch:4d}  glibc default {default:9.0f}/s  tuned {tuned:9.0f}/s  ratio {r}")
    args.out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(args.out / "allocator.csv", index=False)
    print(f"\nwrote {args.out / 'allocator.csv'}")
