"""`make bench`: certification throughput next to the base model's own batched inference throughput.

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
import statistics
import time
from pathlib import Path

import pandas as pd
import torch

from rsbench.certify.multipoint import ForwardPool, PooledModel
from rsbench.certify.pushforward import LinearPushforward
from rsbench.certify.sampling import PRECISIONS, PointSampler, autocast
from rsbench.data.registry import DatasetSpec
from rsbench.methods.gaussian import GaussianSmoothing
from rsbench.models import build_model
from rsbench.runtime import tune_allocator
from rsbench.smoothed import compiled
from rsbench.stages.points import fastest_batch

MNIST = DatasetSpec("mnist", "mnist", (1, 28, 28), 10, (0.1307,), (0.3081,))
CIFAR = DatasetSpec("cifar10", "cifar10", (3, 32, 32), 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
MODELS = {
    "mnist_mlp_784-200-10": ("mlp", MNIST, {"widths": [200]}),
    "mnist_cnn": ("cnn", MNIST, {}),
    "cifar_resnet20": ("cifar_resnet", CIFAR, {"depth": 20}),
}


DEVICE = torch.device("cpu")  # set by --device


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def _peak_mb_reset() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.reset_peak_memory_stats(DEVICE)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux)
    except OSError:
        pass


def _peak_mb() -> float:
    if DEVICE.type == "cuda":
        return torch.cuda.max_memory_allocated(DEVICE) / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rate(fn, samples: int, min_time: float) -> float:
    """samples/s of fn(), repeated until min_time seconds have passed (after one warm-up call)."""
    fn()
    _sync()
    reps, t0 = 0, time.perf_counter()
    while True:
        fn()
        _sync()
        reps += 1
        dt = time.perf_counter() - t0
        if dt >= min_time:
            return samples * reps / dt


@torch.inference_mode()
def raw_limit(model, spec, batches, min_time, channels_last=False, precision=None) -> tuple[int, float]:
    """Best batch size and its forward throughput on inputs already in memory, at ``precision``."""
    best = (0, 0.0)
    for b in batches:
        x = torch.rand(b, *spec.shape, device=DEVICE)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)

        def forward(x=x):
            with autocast(DEVICE, precision):
                return model(x).argmax(1)

        rate = _rate(forward, b, min_time)
        best = max(best, (b, rate), key=lambda t: t[1])
    return best


def certify_rate(model, spec, batch, n, min_time, pushforward=None, channels_last=False,
                 precision=None) -> tuple[float, float]:
    """Base-model evaluations/s of one test point's CERTIFY as `rsbench certify` runs it (N0 = 100 + n)."""
    x = torch.rand(spec.shape, device=DEVICE)
    method = GaussianSmoothing(0.25)
    sampler = PointSampler(model, method.noise, x, 0, spec.num_classes, batch, 0, pushforward, channels_last,
                           precision)
    _peak_mb_reset()
    rate = _rate(lambda: method.certify(sampler, 100, n, 0.001), 100 + n, min_time)
    return rate, _peak_mb()


def multipoint_rates(model, spec, batch: int, n: int, k: int, min_time: float, channels_last: bool,
                     precision, pooling: str = "request") -> tuple[float, float]:
    """Evaluations/s of CERTIFY over k test points, one at a time and k at a time. ``pooling="request"`` pools
    them as ``certify.points_per_batch=k`` does (rsbench/stages/points.py: whole Monte Carlo requests through
    the pool, one noise fill and forward stream per group); ``"forward"`` pools only the forward calls (each
    point draws its own noise), for comparison (scripts/bench_multipoint.py)."""
    xs = [torch.rand(spec.shape, device=DEVICE) for _ in range(k)]
    method = GaussianSmoothing(0.25)
    pool = ForwardPool()
    pooled = PooledModel(model, pool)
    whole = pooling == "request"

    def certify(x, i, together: bool):
        sampler = PointSampler(pooled if together else model, method.noise, x, i, spec.num_classes, batch, 0, None,
                               channels_last, precision, pool if together and whole else None,
                               model if together and whole else None)
        return method.certify(sampler, 100, n, 0.001)

    single = _rate(lambda: [certify(x, i, False) for i, x in enumerate(xs)], k * (100 + n), min_time)
    multi = _rate(lambda: pool.evaluate([(x, i) for i, x in enumerate(xs)], lambda x, i: certify(x, i, True)),
                  k * (100 + n), min_time)
    return single, multi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    args = ap.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    precisions = (args.precision or ("fp32,bf16" if DEVICE.type == "cuda" else "fp32")).split(",")
    tune_allocator()  # as every rsbench stage does (rsbench/runtime.py)
    torch.manual_seed(0)
    rows = []
    models = dict(MODELS)
    if DEVICE.type == "cuda":
        models["cifar_resnet110"] = ("cifar_resnet", CIFAR, {"depth": 110})
    if args.models:
        models = {k: models[k] for k in args.models.split(",")}
    print(f"torch {torch.__version__}, device {DEVICE}, {torch.get_num_threads()} threads, repeats={args.repeats}, "
          f"precision {','.join(precisions)}")
    for (name, (arch, spec, params)), prec in ((m, p) for m in models.items() for p in precisions):
        precision = PRECISIONS[prec]
        model = build_model(arch, spec, params).eval().to(DEVICE)
        # convolutional models: the limit is the faster memory order (channels-last here), which certify uses too
        cl = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
        # and the default order too, side by side, for the channels-last speed-up column
        plain = copy.deepcopy(model) if cl else None
        if cl:
            model = model.to(memory_format=torch.channels_last)
        candidates = [100, 200, 500, 1000, 2000, 4000] if arch == "mlp" else [100, 200, 400, 800]
        if DEVICE.type == "cuda":  # certify at the engine's batch=auto; the limit at the best size seen
            batch = fastest_batch(model, spec, DEVICE, cl, precision)
            limit_batch, _ = raw_limit(model, spec, sorted({500, 1000, 2000, 4000, 8000, 16000, batch}),
                                       args.min_time / 2, cl, precision)
            n = args.n or 100_000  # the N per point
        else:
            batch = limit_batch = raw_limit(model, spec, candidates, args.min_time / 2, cl, precision)[0]
            n = args.n or max(20 * batch, 10_000)  # at least the engine's quick N: per-point costs amortised
        variants = [("direct", model, None)]
        if LinearPushforward.applies(model) and precision is None:  # as rsbench certify: fp32 only
            variants.append(("pushforward", model, LinearPushforward(model)))
        if args.compile and name in args.compile_models.split(","):
            variants.append(("compiled", compiled(model), None))  # as certify.compile=true builds it
        limits = {v: [] for v, _, _ in variants}
        plain_limits, certs, peaks = [], {v: [] for v, _, _ in variants}, {v: [] for v, _, _ in variants}
        for _ in range(args.repeats):  # interleaved, so drift in machine load hits every column alike
            for v, m, pf in variants:
                if pf is None:  # the pushforward row shares the direct row's limit
                    limits[v].append(raw_limit(m, spec, [limit_batch], args.min_time, cl, precision)[1])
            if plain is not None:
                plain_limits.append(raw_limit(plain, spec, [limit_batch], args.min_time, False, precision)[1])
            for v, m, pf in variants:
                rate, peak = certify_rate(m, spec, batch, n, args.min_time, pf, cl, precision)
                certs[v].append(rate)
                peaks[v].append(peak)
        limits["pushforward"] = limits["direct"]
        scale = 3 if DEVICE.type == "cuda" else 10  # n is already 100,000 there
        big_peak = {v: certify_rate(m, spec, batch, scale * n, args.min_time, pf, cl, precision)[1]
                    for v, m, pf in variants}
        for v, _, _ in variants:
            # every row against the eager model's limit: a compiled row's ratio above 1 is compilation's gain
            ratios = [c / lim for c, lim in zip(certs[v], limits["direct"], strict=True)]
            lim = limits[v]
            rows.append({
                "model": name, "device": DEVICE.type, "precision": prec, "sampler": v,
                "memory_format": "channels_last" if cl else "-", "batch": batch, "limit_batch": limit_batch, "n": n,
                "limit_samples_s": statistics.median(lim), "limit_spread": f"{min(lim):.0f}-{max(lim):.0f}",
                "certify_samples_s": statistics.median(certs[v]),
                "certify_spread": f"{min(certs[v]):.0f}-{max(certs[v]):.0f}",
                "ratio": statistics.median(ratios), "ratio_spread": f"{min(ratios):.2f}-{max(ratios):.2f}",
                "peak_mb": max(peaks[v]), "peak_mb_10x_n": big_peak[v],
                "channels_last_speedup": statistics.median([a / b for a, b in
                                                            zip(limits["direct"], plain_limits, strict=True)])
                if plain is not None else float("nan"),
            })
            print(f"{name:22s} {prec:4s} {v:11s} batch {batch:6d}  limit {rows[-1]['limit_samples_s']:10.0f}/s  "
                  f"certify {rows[-1]['certify_samples_s']:10.0f}/s  ratio {rows[-1]['ratio']:.2f} "
                  f"[{rows[-1]['ratio_spread']}]  peak {rows[-1]['peak_mb']:.0f} MB")
        if name == "mnist_cnn":  # small model, n = 1,000: where one point's blocks leave the device idle
            k = args.points or (64 if DEVICE.type == "cuda" else 8)
            pairs = [multipoint_rates(model, spec, batch, 1000, k, args.min_time, cl, precision)
                     for _ in range(max(3, args.repeats // 3))]
            ratios = [m / s for s, m in pairs]
            print(f"{name:22s} {prec:4s} multi-point ({k} points) / single-point certify at n = 1,000: "
                  f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}] "
                  f"({statistics.median([m for _, m in pairs]):.0f} vs {statistics.median([s for s, _ in pairs]):.0f}"
                  " evaluations/s)")
    df = pd.DataFrame(rows)
    if "bf16" in precisions and "fp32" in precisions:  # the speed-up reduced precision buys, per model
        direct = df[df["sampler"] == "direct"].set_index(["model", "precision"])["certify_samples_s"]
        for name in models:
            print(f"{name:22s} certify bf16 / fp32: {direct[(name, 'bf16')] / direct[(name, 'fp32')]:.2f}")
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "bench.csv", index=False)
    cols = list(df.columns)
    md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        md.append("| " + " | ".join(f"{v:.2f}" if c in ("ratio", "channels_last_speedup") else
                                     (f"{v:.0f}" if isinstance(v, float) else str(v)) for c, v in r.items()) + " |")
    (args.out / "bench.md").write_text("\n".join(md) + "\n")
    print(f"\nwrote {args.out / 'bench.csv'} and {args.out / 'bench.md'}")


if __name__ == "__main__":
    main()
