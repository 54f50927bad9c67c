"""`python scripts/bench train` (in `make bench`): training epoch throughput next to the bare training step,
measured side by side.

For the CIFAR ResNet-20 (width 16) at batch 128, interleaved --repeats times in one run:
  step   the bare step: forward, cross-entropy, backward, SGD with momentum, on one fixed channels-last
         batch already in memory (no data order, augmentation, noise, logging or evaluation): images/s
  epoch  `rsbench train`'s loop (rsbench.training.loop.train_model) for one epoch on --images in-memory
         images: shuffled order, crop + flip, Gaussian noise at sigma 0.5, channels-last, the progress bar,
         the per-epoch training checkpoint, and the clean and noisy test evaluation scaled to a 50,000-image
         epoch (1,017 genuine test images per 50,000 training images): images/s
  ratio  epoch / step (1.0 = the loop costs nothing beyond the step; the acceptance bar is 0.9)
Each number is the median of the repeats with its min-max spread. Writes outputs/bench/bench_train.csv.

    python scripts/bench train [--images 3200] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
import torch

from bench.harness import CIFAR, interleaved, ratio, seconds, spread
from rsbench.data.registry import TensorImages
from rsbench.models import build_model
from rsbench.training.loop import TrainConfig, train_model

BATCH = 128
TC = TrainConfig(epochs=1, batch_size=BATCH, optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4,
                 schedule="cosine", step_size=30, gamma=0.1, augment="crop_flip")


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("cifar_resnet", CIFAR, {"depth": 20})


def bare_step(images: int) -> float:
    """Images/s of forward + backward + SGD on one fixed channels-last batch (the speed limit of training)."""
    net = model().to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x = torch.rand(BATCH, *CIFAR.shape).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (BATCH,))
    steps = -(-images // BATCH)

    def run() -> None:
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return steps * BATCH / seconds(run)


def epoch(images: int, train: TensorImages, test: TensorImages) -> float:
    """Images/s of one epoch of the training loop, checkpoint and scaled evaluation included."""
    net = model()
    with tempfile.TemporaryDirectory() as tmp:
        return images / seconds(lambda: train_model(
            net, train, test, TC, 0.5, 0, torch.device("cpu"), str(Path(tmp) / "train_log.csv"),
            eval_limit=max(1, round(1017 * images / 50000)), state_path=Path(tmp) / "train_state.pt"))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python scripts/bench train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=3200, help="training images per measured epoch")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--out", type=Path, default=Path("outputs/bench"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    train = TensorImages(torch.rand(args.images, *CIFAR.shape, generator=g), torch.randint(0, 10, (args.images,)))
    test = TensorImages(torch.rand(1017, *CIFAR.shape, generator=g), torch.randint(0, 10, (1017,)))
    bare_step(BATCH * 4)  # warm-up: allocator, kernels
    got = interleaved({"step": lambda: bare_step(args.images), "epoch": lambda: epoch(args.images, train, test)},
                      args.repeats)  # a slower moment of the machine hits both alike
    rows = [{"measure": name, "median": s.median, "min": s.lo, "max": s.hi}
            for name, s in (("step images/s", spread(got["step"])), ("epoch images/s", spread(got["epoch"])),
                            ("epoch / step", ratio(got["epoch"], got["step"])))]
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "bench_train.csv", index=False)
    print(f"CIFAR ResNet-20, batch {BATCH}, {args.images} images per epoch, {args.threads} threads, "
          f"{args.repeats} interleaved repeats")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}" if v < 10 else f"{v:.0f}"))
