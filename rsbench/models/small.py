"""Small models for MNIST-sized inputs: an MLP with configurable widths, a LeNet-style CNN, and the LeNet of the
field's released MNIST models."""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


class LeNet(nn.Module):
    """The LeNet of the MNIST runs of consistency, SmoothMix and MACER (their released checkpoints load into it
    key for key): conv5x5(20) -> ReLU -> maxpool2 -> conv5x5(50) -> ReLU -> maxpool2 -> FC(500) -> ReLU -> FC."""

    def __init__(self, spec: DatasetSpec) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(spec.shape[0], 20, 5, 1)
        self.conv2 = nn.Conv2d(20, 50, 5, 1)
        side = ((spec.shape[1] - 4) // 2 - 4) // 2
        self.fc1 = nn.Linear(50 * side * side, 500)
        self.fc2 = nn.Linear(500, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2, 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2, 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


MODELS.register("lenet")(LeNet)
