"""Raw forward throughput by batch size and precision (CUDA): where reduced precision pays, side by side.

For each CIFAR ResNet and each batch size, the base model's forward (channels-last, inputs in memory,
argmax as certify takes it) at fp32 (PyTorch's defaults: TF32 convolutions), bf16 and fp16 autocast,
interleaved over --repeats rounds; prints median samples/s and the bf16 / fp32 and fp16 / fp32 ratios.
Run: `python scripts/bench_precision.py` on a GPU (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rsbench.certify.sampling import PRECISIONS, autocast
from rsbench.data.registry import DatasetSpec
from rsbench.models import build_model

CIFAR = DatasetSpec("cifar10", "cifar10", (3, 32, 32), 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


@torch.inference_mode()
def rate(model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype | None, min_time: float) -> float:
    """samples/s of the forward pass on x, after one warm-up call, timed until min_time has passed."""
    with autocast(x.device, dtype):
        model(x).argmax(1)
        torch.cuda.synchronize()
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < min_time:
            model(x).argmax(1)
            torch.cuda.synchronize()
            reps += 1
    return reps * len(x) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depths", default="20,110")
    ap.add_argument("--batches", default="1000,4000,16000,51200")
    ap.add_argument("--precisions", default="fp32,bf16,fp16")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.3)
    args = ap.parse_args()
    dev = torch.device("cuda")
    precs = args.precisions.split(",")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, cudnn.allow_tf32="
          f"{torch.backends.cudnn.allow_tf32}")
    for depth in map(int, args.depths.split(",")):
        model = build_model("cifar_resnet", CIFAR, {"depth": depth}).eval().to(dev)
        model = model.to(memory_format=torch.channels_last)
        for b in map(int, args.batches.split(",")):
            x = torch.rand(b, 3, 32, 32, device=dev).contiguous(memory_format=torch.channels_last)
            rates = {p: [] for p in precs}
            for _ in range(args.repeats):  # interleaved
                for p in precs:
                    rates[p].append(rate(model, x, PRECISIONS[p], args.min_time))
            med = {p: statistics.median(r) for p, r in rates.items()}
            ratios = "  ".join(f"{p}/fp32 {med[p] / med['fp32']:.2f}" for p in precs if p != "fp32")
            print(f"resnet{depth:<4d} batch {b:6d}  " + "  ".join(f"{p} {med[p]:9.0f}/s" for p in precs)
                  + f"  {ratios}")


if __name__ == "__main__":
    main()
