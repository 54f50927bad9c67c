"""CPU regression check of the sampler: certify throughput now vs the sampler of an earlier commit, side by side.

Loads rsbench/certify/sampling.py as it was at COMMIT (`git show`) next to the current one and times one
point's CERTIFY with each (scripts/bench.py's certify_rate) in interleaved pairs, alternating which goes
first: MNIST MLP (direct and pushforward sampler, batch 2,000) and MNIST CNN (channels-last, batch 400),
n = max(20 batches, 10,000), after one unrecorded warm-up pair. Prints the median new / old throughput
ratio with its min-max.
Run: `python scripts/bench_vs_commit.py 3d6f1eb` (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

from rsbench.certify import sampling as new  # noqa: E402
from rsbench.certify.pushforward import LinearPushforward  # noqa: E402
from rsbench.models import build_model  # noqa: E402


def load_old(commit: str):
    source = subprocess.run(["git", "show", f"{commit}:rsbench/certify/sampling.py"], check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "old_sampling.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_sampling", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_sampling"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("commit")
    ap.add_argument("--pairs", type=int, default=7)
    args = ap.parse_args()
    old = load_old(args.commit)
    torch.manual_seed(0)
    for name, arch, params, batch in (("mnist_mlp", "mlp", {"widths": [200]}, 2000), ("mnist_cnn", "cnn", {}, 400)):
        model = build_model(arch, bench.MNIST, params).eval()
        cl = arch == "cnn"
        if cl:
            model = model.to(memory_format=torch.channels_last)
        variants = [("direct", None)] + ([] if cl else [("pushforward", LinearPushforward(model))])
        n = max(20 * batch, 10_000)
        for v, pf in variants:
            ratios = []
            for i in range(-1, args.pairs):  # pair -1 warms both up and is not recorded
                rates = {}
                for impl in ((new, old) if i % 2 else (old, new)):  # alternate who goes first
                    bench.PointSampler = impl.PointSampler
                    rates[impl] = bench.certify_rate(model, bench.MNIST, batch, n, 0.4, pf, cl, None)[0]
                if i >= 0:
                    ratios.append(rates[new] / rates[old])
            print(f"{name:10s} {v:11s} new / {args.commit} certify throughput {statistics.median(ratios):.3f} "
                  f"[{min(ratios):.3f}-{max(ratios):.3f}] ({args.pairs} interleaved pairs)")


if __name__ == "__main__":
    main()
