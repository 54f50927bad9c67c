"""Forward throughput in a fresh process, glibc's default allocator thresholds vs rsbench's (rsbench/runtime.py).

Each measurement is its own fresh Python process (the allocator's state depends on the process's
history, which is the point), alternating tuned / default --repeats times, so both see the same
machine load. Prints samples/s (median and spread) and the ratio tuned / default per model and batch.
Writes outputs/bench/allocator.csv.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd

CASES = [("mnist_cnn", 200), ("mnist_cnn", 400), ("cifar_resnet20", 100), ("cifar_resnet20", 400)]


def child(name: str, batch: int, min_time: float) -> None:
    """One fresh-process measurement: build the model, time forward + argmax, print JSON."""
    from rsbench.runtime import tune_allocator

    tuned = tune_allocator()
    import time

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench import MODELS

    from rsbench.models import build_model

    arch, spec, params = MODELS[name]
    torch.manual_seed(0)
    model = build_model(arch, spec, params).eval().to(memory_format=torch.channels_last)
    x = torch.rand(batch, *spec.shape).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        model(x).argmax(1)
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < min_time:
            model(x).argmax(1)
            reps += 1
        rate = reps * batch / (time.perf_counter() - t0)
    print(json.dumps({"tuned": tuned, "rate": rate}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=2.0)
    ap.add_argument("--out", type=Path, default=Path("outputs/bench"))
    ap.add_argument("--child", nargs=2, metavar=("MODEL", "BATCH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.min_time)
        return
    rows = []
    for name, batch in CASES:
        rates: dict[str, list[float]] = {"default": [], "tuned": []}
        for _ in range(args.repeats):
            for setting in ("default", "tuned"):
                env = dict(os.environ, RSBENCH_TUNE_MALLOC="1" if setting == "tuned" else "0")
                res = subprocess.run([sys.executable, __file__, "--child", name, str(batch),
                                      "--min-time", str(args.min_time)], env=env, check=True,
                                     capture_output=True, text=True)
                got = json.loads(res.stdout.strip().splitlines()[-1])
                if got["tuned"] != (setting == "tuned"):
                    sys.exit(f"allocator setting not applied as asked ({setting}); is MALLOC_*_ set?")
                rates[setting].append(got["rate"])
        ratios = [t / d for t, d in zip(rates["tuned"], rates["default"], strict=True)]
        rows.append({"model": name, "batch": batch,
                     "default_samples_s": statistics.median(rates["default"]),
                     "default_spread": f"{min(rates['default']):.0f}-{max(rates['default']):.0f}",
                     "tuned_samples_s": statistics.median(rates["tuned"]),
                     "tuned_spread": f"{min(rates['tuned']):.0f}-{max(rates['tuned']):.0f}",
                     "ratio": statistics.median(ratios), "ratio_spread": f"{min(ratios):.2f}-{max(ratios):.2f}"})
        r = rows[-1]
        print(f"{name:16s} batch {batch:4d}  glibc default {r['default_samples_s']:9.0f}/s "
              f"[{r['default_spread']}]  tuned {r['tuned_samples_s']:9.0f}/s [{r['tuned_spread']}]  "
              f"ratio {r['ratio']:.2f} [{r['ratio_spread']}]")
    args.out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(args.out / "allocator.csv", index=False)
    print(f"\nwrote {args.out / 'allocator.csv'}")


if __name__ == "__main__":
    main()
