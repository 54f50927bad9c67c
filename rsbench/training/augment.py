"""Training-time data augmentation, applied to whole mini-batches with a seeded generator.

``crop_flip`` is the CIFAR recipe of Cohen et al., SmoothAdv and MACER (torchvision's
``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip()``): each image is zero-padded by 4 pixels,
a 32x32 window is cut at a uniformly random offset in [0, 8]^2, and the result is mirrored left-right
with probability 1/2. ``flip`` is the mirror alone (the SRA authors' CIFAR-10 training). Augmentation runs
on training batches only; evaluation and certification never see it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from rsbench.data.registry import DatasetSpec
from rsbench.errors import RsbenchError
from rsbench.registry import Registry

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
AUGMENTS: Registry[Augment] = Registry("augmentation")


@AUGMENTS.register("none")
def no_augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return x


@AUGMENTS.register("crop_flip")
def crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop after ``pad``-pixel zero padding, then a random horizontal flip, per image of ``x`` (B, C, H, W)."""
    b, _, h, w = x.shape
    offsets = torch.randint(0, 2 * pad + 1, (2, b), generator=generator, device=generator.device).to(x.device)
    flip = torch.rand(b, generator=generator, device=generator.device).to(x.device) < 0.5
    rows = offsets[0, :, None] + torch.arange(h, device=x.device)             # (B, H)
    cols = offsets[1, :, None] + torch.arange(w, device=x.device)             # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    padded = F.pad(x, (pad, pad, pad, pad))
    batch = torch.arange(b, device=x.device)[:, None, None]
    # gathered channels-last (B, H, W, C): returned as a (B, C, H, W) view in channels-last memory order
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


@AUGMENTS.register("flip")
def flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image of ``x`` (B, C, H, W) mirrored left-right with probability 1/2 (the SRA authors' CIFAR-10
    training, ThomRC/sra trainers/trainer.py, which flips each whole batch with probability 1/2)."""
    mirror = torch.rand(x.shape[0], generator=generator, device=generator.device).to(x.device) < 0.5
    return torch.where(mirror[:, None, None, None], x.flip(-1), x)


def resolve_augment(name: str, spec: DatasetSpec) -> str:
    """``train.augment``: 'auto' is the dataset's own recipe (``spec.augment``); otherwise a registered name."""
    resolved = spec.augment if name == "auto" else name
    if resolved not in AUGMENTS:
        raise RsbenchError(f"train.augment={name!r} is invalid; valid values: auto, {', '.join(AUGMENTS)}")
    return resolved
