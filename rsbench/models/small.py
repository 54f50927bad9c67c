"""Small models for MNIST-sized inputs: an MLP with configurable widths and a LeNet-style CNN."""

from __future__ import annotations

import torch
from torch import nn

from rsbench.data.registry import DatasetSpec
from rsbench.models.registry import MODELS


@MODELS.register("mlp")
def mlp(spec: DatasetSpec, widths: list[int] | tuple[int, ...] = (200,)) -> nn.Module:
    """Flatten -> [Linear -> ReLU] per hidden width -> Linear to the classes."""
    layers: list[nn.Module] = [nn.Flatten()]
    d = spec.dim
    for w in widths:
        layers += [nn.Linear(d, int(w)), nn.ReLU()]
        d = int(w)
    layers.append(nn.Linear(d, spec.num_classes))
    return nn.Sequential(*layers)


@MODELS.register("cnn")
def cnn(spec: DatasetSpec, channels: tuple[int, int] | list[int] = (16, 32), hidden: int = 128) -> nn.Module:
    """LeNet-style: two [conv5x5 -> ReLU -> maxpool2] blocks, then FC(hidden) -> ReLU -> FC(classes)."""
    c1, c2 = (int(c) for c in channels)
    features = nn.Sequential(
        nn.Conv2d(spec.shape[0], c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
    )
    with torch.no_grad():
        flat = features(torch.zeros(1, *spec.shape)).shape[1]
    return nn.Sequential(features, nn.Linear(flat, int(hidden)), nn.ReLU(), nn.Linear(int(hidden), spec.num_classes))
