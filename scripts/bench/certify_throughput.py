"""`python scripts/bench certify` (in `make bench`): certification throughput next to the base model's own
batched inference throughput.

For each model (MNIST MLP 784-200-10, MNIST CNN, CIFAR ResNet-20), measured side by side in one run:
  limit    raw batched forward throughput at the best batch size (samples/s), inputs already in memory
  certify  one test point's CERTIFY exactly as `rsbench certify` runs it (GaussianSmoothing.certify on a
           PointSampler: N0 = 100 selection + n estimation draws of seeded noise into a buffer, forward,
           counts on the tensor side, Clopper-Pearson), base-model evaluations/s at that batch size
  ratio    certify / limit (1.0 = certification costs nothing beyond the forward passes)
  channels_last_speedup  (conv models) limit in channels-last order / limit in the default order, paired
  peak MB  peak resident memory of the process while certifying n = max(20 batches, 10,000) (reset before each
           measurement), and again for 10x more samples (3x on CUDA): streaming keeps it flat in n
The MLP is also measured with the linear pushforward sampler (its own row). Each number is the
median of --repeats runs, with the min-max spread. Writes outputs/bench/bench.csv and bench.md.

Multi-point batching (certify.points_per_batch): for the MNIST CNN, CERTIFY of --points test points at
n = 1,000 one point at a time and then --points at a time through one ForwardPool (as `rsbench certify
certify.points_per_batch=K` runs them), interleaved; printed as the multi-point / single-point ratio.

--device cuda (the default when CUDA is available) measures on the GPU (timings synchronised, peak MB =
peak allocated GPU memory), adds a CIFAR ResNet-110 and defaults --precision to fp32,bf16: each
precision gets its own rows (limit and certify both under that autocast), and the run ends with the
bf16 / fp32 certify throughput ratio per model. On CUDA, certify runs at the batch `certify.batch=auto`
picks (rsbench.stages.points.fastest_batch, probing up to the memory limit) with n = 100,000 per point
(--n), and the limit is the best raw throughput over the candidate sizes and that batch. On CPU the
default stays fp32 (the same rows as before).

--compile adds a "compiled" row per model in --compile-models: the same limit and certify with the model
under torch.compile as `certify.compile=true` runs it, so the speed-up compilation buys is read off side by side.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import pandas as pd
import torch

from bench.harness import CIFAR, CPU, MNIST, interleaved, peak_mb, peak_reset, rate, ratio, spread, write_table
from rsbench.certify.multipoint import ForwardPool, PooledModel
from rsbench.certify.pushforward import LinearPushforward
from rsbench.certify.sampling import PRECISIONS, PointSampler, autocast
from rsbench.methods.gaussian import GaussianSmoothing
from rsbench.models import build_model
from rsbench.runtime import tune_allocator
from rsbench.smoothed import compiled
from rsbench.stages.points import fastest_batch

MODELS = {
    "mnist_mlp_784-200-10": ("mlp", MNIST, {"widths": [200]}),
    "mnist_cnn": ("cnn", MNIST, {}),
    "cifar_resnet20": ("cifar_resnet", CIFAR, {"depth": 20}),
}


@torch.inference_mode()
def raw_limit(model, spec, batches, min_time, channels_last=False, precision=None,
              device: torch.device = CPU) -> tuple[int, float]:
    """Best batch size and its forward throughput (argmax included) on inputs already in memory."""
    best = (0, 0.0)
    for b in batches:
        x = torch.rand(b, *spec.shape, device=device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)

        def forward(x=x):
            with autocast(device, precision):
                return model(x).argmax(1)

        best = max(best, (b, rate(forward, b, min_time, device)), key=lambda t: t[1])
    return best


def certify_rate(model, spec, batch, n, min_time, pushforward=None, channels_last=False, precision=None,
                 device: torch.device = CPU) -> tuple[float, float]:
    """Base-model evaluations/s of one test point's CERTIFY as `rsbench certify` runs it (N0 = 100 + n), and
    the peak memory (MiB) while it ran."""
    x = torch.rand(spec.shape, device=device)
    method = GaussianSmoothing(0.25)
    sampler = PointSampler(model, method.noise, x, 0, spec.num_classes, batch, 0, pushforward, channels_last,
                           precision)
    peak_reset(device)
    got = rate(lambda: method.certify(sampler, 100, n, 0.001), 100 + n, min_time, device)
    return got, peak_mb(device)


def multipoint_rates(model, spec, batch: int, n: int, k: int, min_time: float, channels_last: bool,
                     precision, pooling: str = "request", device: torch.device = CPU) -> tuple[float, float]:
    """Evaluations/s of CERTIFY over k test points, one at a time and k at a time. ``pooling="request"`` pools
    them as ``certify.points_per_batch=k`` does (rsbench/stages/points.py: whole Monte Carlo requests through
    the pool, one noise fill and forward stream per group); ``"forward"`` pools only the forward calls (each
    point draws its own noise), for comparison (`python scripts/bench multipoint`)."""
    xs = [torch.rand(spec.shape, device=device) for _ in range(k)]
    method = GaussianSmoothing(0.25)
    pool = ForwardPool()
    pooled = PooledModel(model, pool)
    whole = pooling == "request"

    def certify(x, i, together: bool):
        sampler = PointSampler(pooled if together else model, method.noise, x, i, spec.num_classes, batch, 0, None,
                               channels_last, precision, pool if together and whole else None,
                               model if together and whole else None)
        return method.certify(sampler, 100, n, 0.001)

    single = rate(lambda: [certify(x, i, False) for i, x in enumerate(xs)], k * (100 + n), min_time, device)
    multi = rate(lambda: pool.evaluate([(x, i) for i, x in enumerate(xs)], lambda x, i: certify(x, i, True)),
                 k * (100 + n), min_time, device)
    return single, multi


def model_rows(name, arch, spec, params, prec, args, device) -> list[dict]:
    """The rows of one model at one precision: the limit, every sampler variant's certify, peaks, speed-up."""
    precision = PRECISIONS[prec]
    model = build_model(arch, spec, params).eval().to(device)
    # convolutional models: the limit is the faster memory order (channels-last), which certify uses too, and
    # the default order is timed beside it for the channels-last speed-up column
    cl = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    plain = copy.deepcopy(model) if cl else None
    if cl:
        model = model.to(memory_format=torch.channels_last)
    candidates = [100, 200, 500, 1000, 2000, 4000] if arch == "mlp" else [100, 200, 400, 800]
    if device.type == "cuda":  # certify at the engine's batch=auto; the limit at the best size seen
        batch = fastest_batch(model, spec, device, cl, precision)
        limit_batch, _ = raw_limit(model, spec, sorted({500, 1000, 2000, 4000, 8000, 16000, batch}),
                                   args.min_time / 2, cl, precision, device)
        n = args.n or 100_000  # the performance issue's N per point
    else:
        batch = limit_batch = raw_limit(model, spec, candidates, args.min_time / 2, cl, precision, device)[0]
        n = args.n or max(20 * batch, 10_000)  # at least the engine's quick N: per-point costs amortised
    variants = {"direct": (model, None)}
    if LinearPushforward.applies(model) and precision is None:  # as rsbench certify: fp32 only
        variants["pushforward"] = (model, LinearPushforward(model))
    if args.compile and name in args.compile_models.split(","):
        variants["compiled"] = (compiled(model), None)  # as certify.compile=true builds it
    arms = {"limit": lambda: raw_limit(model, spec, [limit_batch], args.min_time, cl, precision, device)[1]}
    if "compiled" in variants:
        arms["limit compiled"] = lambda: raw_limit(variants["compiled"][0], spec, [limit_batch], args.min_time, cl,
                                                   precision, device)[1]
    if plain is not None:
        arms["limit default order"] = lambda: raw_limit(plain, spec, [limit_batch], args.min_time, False, precision,
                                                        device)[1]
    for v, (m, pf) in variants.items():
        arms[v] = lambda m=m, pf=pf: certify_rate(m, spec, batch, n, args.min_time, pf, cl, precision, device)
    got = interleaved(arms, args.repeats)  # drift in machine load hits every column alike
    scale = 3 if device.type == "cuda" else 10  # n is already 100,000 there
    rows = []
    for v, (m, pf) in variants.items():
        certs = [r for r, _ in got[v]]
        lim = got["limit compiled" if v == "compiled" else "limit"]
        # every row against the eager model's limit: a compiled row's ratio above 1 is compilation's gain
        r = ratio(certs, got["limit"])
        rows.append({
            "model": name, "device": device.type, "precision": prec, "sampler": v,
            "memory_format": "channels_last" if cl else "-", "batch": batch, "limit_batch": limit_batch, "n": n,
            "limit_samples_s": spread(lim).median, "limit_spread": spread(lim).range(),
            "certify_samples_s": spread(certs).median, "certify_spread": spread(certs).range(),
            "ratio": r.median, "ratio_spread": r.range(".2f"),
            "peak_mb": max(p for _, p in got[v]),
            "peak_mb_10x_n": certify_rate(m, spec, batch, scale * n, args.min_time, pf, cl, precision, device)[1],
            "channels_last_speedup": ratio(got["limit"], got["limit default order"]).median
            if plain is not None else float("nan"),
        })
        print(f"{name:22s} {prec:4s} {v:11s} batch {batch:6d}  limit {rows[-1]['limit_samples_s']:10.0f}/s  "
              f"certify {rows[-1]['certify_samples_s']:10.0f}/s  ratio {r}  peak {rows[-1]['peak_mb']:.0f} MB")
    if name == "mnist_cnn":  # small model, n = 1,000: where one point's blocks leave the device idle
        k = args.points or (64 if device.type == "cuda" else 8)
        pairs = [multipoint_rates(model, spec, batch, 1000, k, args.min_time, cl, precision, device=device)
                 for _ in range(max(3, args.repeats // 3))]
        singles, multis = [s for s, _ in pairs], [m for _, m in pairs]
        print(f"{name:22s} {prec:4s} multi-point ({k} points) / single-point certify at n = 1,000: "
              f"{ratio(multis, singles)} ({spread(multis).median:.0f} vs {spread(singles).median:.0f} evaluations/s)")
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python scripts/bench certify", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--min-time", type=float, default=0.4, help="seconds per timed measurement")
    ap.add_argument("--out", type=Path, default=Path("outputs/bench"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--points", type=int, default=None, help="test points per batch for the multi-point rows "
                                                             "(default: 8 on CPU, 64 on CUDA)")
    ap.add_argument("--precision", default=None, help="comma-separated, of fp32,bf16,fp16 (default: fp32 on CPU, "
                                                      "fp32,bf16 on CUDA)")
    ap.add_argument("--n", type=int, default=None, help="samples per certified point (default: max(20 batches, "
                                                        "10,000) on CPU, 100,000 on CUDA)")
    ap.add_argument("--models", default=None, help="comma-separated subset of the models (default: all)")
    ap.add_argument("--compile", action="store_true", help="add torch.compile rows (see above)")
    ap.add_argument("--compile-models", default="mnist_cnn,cifar_resnet20")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    precisions = (args.precision or ("fp32,bf16" if device.type == "cuda" else "fp32")).split(",")
    tune_allocator()  # as every rsbench stage does (rsbench/runtime.py)
    torch.manual_seed(0)
    models = dict(MODELS)
    if device.type == "cuda":
        models["cifar_resnet110"] = ("cifar_resnet", CIFAR, {"depth": 110})
    if args.models:
        unknown = set(args.models.split(",")) - set(models)
        if unknown:
            raise SystemExit(f"unknown --models {sorted(unknown)}; valid: {', '.join(models)}")
        models = {k: models[k] for k in args.models.split(",")}
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, repeats={args.repeats}, "
          f"precision {','.join(precisions)}")
    rows = [row for name, (arch, spec, params) in models.items() for prec in precisions
            for row in model_rows(name, arch, spec, params, prec, args, device)]
    df = pd.DataFrame(rows)
    if "bf16" in precisions and "fp32" in precisions:  # the speed-up reduced precision buys, per model
        direct = df[df["sampler"] == "direct"].set_index(["model", "precision"])["certify_samples_s"]
        for name in models:
            print(f"{name:22s} certify bf16 / fp32: {direct[(name, 'bf16')] / direct[(name, 'fp32')]:.2f}")
    paths = write_table(df, args.out, "bench", two_places=("ratio", "channels_last_speedup"))
    print(f"\nwrote {paths[0]} and {paths[1]}")
