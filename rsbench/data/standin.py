"""Stand-in data of a real dataset's shape, for smoke runs of configs whose data is not on this machine.

Each class c has a fixed random prototype image; an example is its prototype plus seeded noise,
clipped to [0, 1]. Learnable, deterministic, and clearly not real data: results on it are smoke
tests, never CIFAR-10 or ImageNet numbers.
"""

from __future__ import annotations

import torch

from rsbench.data.registry import DATASETS, DatasetEntry, DatasetSpec, TensorImages
from rsbench.data.torchvision_sets import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD

_SHAPES = {
    "standin_cifar10": ("cifar10", (3, 32, 32), 10, CIFAR_MEAN, CIFAR_STD, 2000, 200),
    "standin_imagenet": ("imagenet", (3, 224, 224), 1000, IMAGENET_MEAN, IMAGENET_STD, 2000, 100),
}


def make_standin(name: str, split: str, n_train: int | None = None, n_test: int | None = None,
                 **_: object) -> TensorImages:
    family, shape, k, *_rest, default_train, default_test = _SHAPES[name]
    n = (n_train or default_train) if split == "train" else (n_test or default_test)
    g = torch.Generator().manual_seed(12345)
    prototypes = torch.rand((k, *shape), generator=g)
    g.manual_seed(1 if split == "train" else 2)
    y = torch.randint(0, k, (n,), generator=g)
    x = (prototypes[y] + 0.15 * torch.randn((n, *shape), generator=g)).clamp_(0.0, 1.0)
    return TensorImages(x, y)


for _name, (_fam, _shape, _k, _mean, _std, *_) in _SHAPES.items():
    DATASETS.register(_name)(DatasetEntry(
        spec=lambda _n=_name, _f=_fam, _s=_shape, _c=_k, _m=_mean, _d=_std, **_: DatasetSpec(
            _n, _f, _s, _c, _m, _d, stand_in=True, notes="synthetic stand-in data: smoke runs only",
            augment="crop_flip" if _f == "cifar10" else "none"),
        load=lambda split, _n=_name, **kw: make_standin(_n, split, **kw),
    ))
