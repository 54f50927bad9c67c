"""Raw forward throughput by batch size and precision (CUDA): where reduced precision pays, side by side.

For each CIFAR ResNet and each batch size, the base model's forward (channels-last, inputs in memory,
argmax as certify takes it) at fp32 (PyTorch's defaults: TF32 convolutions), bf16 and fp16 autocast,
interleaved over --repeats rounds; prints median samples/s and the paired bf16 / fp32 and fp16 / fp32 ratios.
Run: `python scripts/bench precision` on a GPU (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import argparse

import torch

from bench.harness import CIFAR, interleaved, rate, ratio, spread
from rsbench.certify.sampling import PRECISIONS, autocast
from rsbench.models import build_model


def forward_rate(model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype | None, min_time: float) -> float:
    """samples/s of the forward pass (argmax included) on x under ``dtype`` autocast."""
    def forward():
        with autocast(x.device, dtype), torch.inference_mode():
            return model(x).argmax(1)

    return rate(forward, len(x), min_time, x.device)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python scripts/bench precision", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depths", default="20,110")
    ap.add_argument("--batches", default="1000,4000,16000,51200")
    ap.add_argument("--precisions", default="fp32,bf16,fp16")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.3)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("bench precision measures CUDA autocast: no CUDA device here")
    dev = torch.device("cuda")
    precs = args.precisions.split(",")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, cudnn.allow_tf32="
          f"{torch.backends.cudnn.allow_tf32}")
    for depth in map(int, args.depths.split(",")):
        model = build_model("cifar_resnet", CIFAR, {"depth": depth}).eval().to(dev)
        model = model.to(memory_format=torch.channels_last)
        for b in map(int, args.batches.split(",")):
            x = torch.rand(b, 3, 32, 32, device=dev).contiguous(memory_format=torch.channels_last)
            rates = interleaved({p: lambda p=p, x=x, model=model: forward_rate(model, x, PRECISIONS[p], args.min_time)
                                 for p in precs}, args.repeats)
            ratios = "  ".join(f"{p}/fp32 {ratio(rates[p], rates['fp32'])}" for p in precs if p != "fp32")
            print(f"resnet{depth:<4d} batch {b:6d}  " + "  ".join(f"{p} {spread(rates[p]).median:9.0f}/s"
                                                                  for p in precs) + f"  {ratios}")
