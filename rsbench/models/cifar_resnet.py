"""He et al. (2016)'s CIFAR ResNets: depth 6n+2 with BasicBlocks in three stages of 16/32/64 channels."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from rsbench.data.registry import DatasetSpec
from rsbench.errors import RsbenchError
from rsbench.models.registry import MODELS


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int, in_channels: int, num_classes: int, width: int = 16) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise RsbenchError(f"model.params.depth={depth} is invalid: CIFAR ResNets have depth 6n+2 "
                               "(20, 32, 44, 56, 110)")
        n = (depth - 2) // 6
        self.conv = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        blocks: list[nn.Module] = []
        cin = width
        for stage, cout in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                blocks.append(BasicBlock(cin, cout, 2 if (stage > 0 and i == 0) else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        out = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


@MODELS.register("cifar_resnet")
def cifar_resnet(spec: DatasetSpec, depth: int = 20, width: int = 16) -> nn.Module:
    return CifarResNet(int(depth), spec.shape[0], spec.num_classes, int(width))
