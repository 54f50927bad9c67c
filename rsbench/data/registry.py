"""The dataset registry and the spec every dataset declares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import Dataset

from rsbench.errors import RsbenchError
from rsbench.registry import Registry


@dataclass(frozen=True)
class DatasetSpec:
    """What a model and a certificate need to know about a dataset.

    ``family`` groups datasets whose models are interchangeable (``mnist5k`` and ``mnist`` are both
    28x28 MNIST digits). ``mean``/``std`` feed the normalisation layer inside the model; noise is
    always added in [0, 1] pixel space, before it.
    """

    name: str
    family: str
    shape: tuple[int, ...]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    stand_in: bool = False
    notes: str = ""
    augment: str = "none"  # training augmentation when train.augment=auto (CIFAR: crop_flip, as Cohen et al.)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: its spec (possibly depending on params) and its split loader."""

    spec: Callable[..., DatasetSpec]
    load: Callable[..., Dataset]


DATASETS: Registry[DatasetEntry] = Registry("dataset")


def load_split(name: str, split: str, data_dir: str | None = None, download: bool = False,
               **params: Any) -> tuple[Dataset, DatasetSpec]:
    """Load ``split`` ('train' or 'test') of dataset ``name``; returns (dataset, spec)."""
    entry = DATASETS.get(name)
    if split not in ("train", "test"):
        raise RsbenchError(f"unknown split {split!r}; valid splits: test, train")
    spec = entry.spec(**params)
    ds = entry.load(split=split, data_dir=data_dir, download=download, **params)
    return ds, spec


class TensorImages(Dataset):
    """Images held in memory: ``x`` float32 (N, C, H, W) in [0, 1], ``y`` int64 (N,).

    ``pixels`` (optional, one entry per image) names each image's pixel source where a dataset mixes
    them (CIFAR-10's shared layout: ``genuine`` or ``jpeg``); results rows and checkpoints record it.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, pixels: list[str] | None = None) -> None:
        if x.ndim != 4 or y.ndim != 1 or len(x) != len(y) or (pixels is not None and len(pixels) != len(y)):
            raise RsbenchError(f"bad image tensors: x {tuple(x.shape)}, y {tuple(y.shape)}")
        self.x = x
        self.y = y
        self.pixels = pixels

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], int(self.y[i])
