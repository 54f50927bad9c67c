"""CPU regression check of the sampler: certify throughput now vs the sampler of an earlier commit, side by side.

Loads rsbench/certify/sampling.py as it was at COMMIT next to the current one and times one point's CERTIFY
with each (`bench.certify_throughput.certify_rate`) in interleaved pairs, alternating which goes first: MNIST
MLP (direct and pushforward sampler, batch 2,000) and MNIST CNN (channels-last, batch 400),
n = max(20 batches, 10,000), after one unrecorded warm-up pair. Prints the median paired new / old throughput
ratio with its min-max. Run: `python scripts/bench sampler 3d6f1eb` (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import torch

from bench import certify_throughput
from bench.harness import MNIST, interleaved, ratio, tree_at
from rsbench.certify import sampling as new
from rsbench.certify.pushforward import LinearPushforward
from rsbench.models import build_model


def old_sampling(commit: str, root: Path) -> ModuleType:
    """rsbench/certify/sampling.py as it was at ``commit``, imported as the module ``old_sampling``."""
    path = tree_at(commit, root) / "rsbench" / "certify" / "sampling.py"
    spec = importlib.util.spec_from_file_location("old_sampling", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_sampling"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python scripts/bench sampler", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("commit")
    ap.add_argument("--pairs", type=int, default=7)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rsbench-bench-sampler-") as scratch:
        old = old_sampling(args.commit, Path(scratch))
    torch.manual_seed(0)
    for name, arch, params, batch in (("mnist_mlp", "mlp", {"widths": [200]}, 2000), ("mnist_cnn", "cnn", {}, 400)):
        model = build_model(arch, MNIST, params).eval()
        cl = arch == "cnn"
        if cl:
            model = model.to(memory_format=torch.channels_last)
        variants = [("direct", None)] + ([] if cl else [("pushforward", LinearPushforward(model))])
        n = max(20 * batch, 10_000)
        for v, pf in variants:
            def timed(impl: ModuleType, pf=pf, model=model, batch=batch, n=n, cl=cl) -> float:
                certify_throughput.PointSampler = impl.PointSampler
                try:
                    return certify_throughput.certify_rate(model, MNIST, batch, n, 0.4, pf, cl, None)[0]
                finally:
                    certify_throughput.PointSampler = new.PointSampler

            rates = interleaved({"old": lambda: timed(old), "new": lambda: timed(new)}, args.pairs,
                                alternate=True, warmup=True)
            print(f"{name:10s} {v:11s} new / {args.commit} certify throughput {ratio(rates['new'], rates['old']):.3f} "
                  f"({args.pairs} interleaved pairs)")
