"""The CIFAR-10 model zoo of DSmooth's Table 1, by name (architectures only; weights are trained here or loaded).

resnet20/32/44/56 (He et al.'s CIFAR ResNets), vgg13_bn/16_bn/19_bn, mobilenetv2_x0_5/x1_0/x1_4,
shufflenetv2_x0_5/x1_0/x2_0 and repvgg_a0/a1/a2, in the 32 x 32 variants used by the common CIFAR model
zoos: stride-1 stems and no early max-pooling, so a 32 x 32 input keeps enough resolution. RepVGG is kept in
its training-time (three-branch) form, which computes the same function as the fused deploy form.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from rsbench.data.registry import DatasetSpec
from rsbench.models.cifar_resnet import cifar_resnet
from rsbench.models.registry import MODELS

for _depth in (20, 32, 44, 56):
    MODELS.register(f"resnet{_depth}")(partial(cifar_resnet, depth=_depth))

# -- VGG with batch norm ------------------------------------------------------------------------------------------
VGG_CFGS = {
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def vgg_bn(spec: DatasetSpec, depth: int) -> nn.Module:
    """VGG-{13,16,19} with batch norm; global average pooling, then 512 -> 512 -> 512 -> classes."""
    layers: list[nn.Module] = []
    c = spec.shape[0]
    for v in VGG_CFGS[depth]:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            c = v
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 512), nn.ReLU(True),
                         nn.Dropout(), nn.Linear(512, 512), nn.ReLU(True), nn.Dropout(),
                         nn.Linear(512, spec.num_classes))


for _depth in VGG_CFGS:
    MODELS.register(f"vgg{_depth}_bn")(partial(vgg_bn, depth=_depth))


# -- MobileNetV2 and ShuffleNetV2 (torchvision blocks, CIFAR stems) ----------------------------------------------
def mobilenetv2(spec: DatasetSpec, width: float) -> nn.Module:
    from torchvision.models import MobileNetV2

    setting = [[1, 16, 1, 1], [6, 24, 2, 1], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2],
               [6, 320, 1, 1]]  # the second stage keeps stride 1 for 32 x 32 inputs
    net = MobileNetV2(num_classes=spec.num_classes, width_mult=width, inverted_residual_setting=setting)
    stem = net.features[0][0]
    net.features[0][0] = nn.Conv2d(spec.shape[0], stem.out_channels, 3, stride=1, padding=1, bias=False)
    return net


SHUFFLE_CHANNELS = {"x0_5": [24, 48, 96, 192, 1024], "x1_0": [24, 116, 232, 464, 1024],
                    "x2_0": [24, 244, 488, 976, 2048]}


def shufflenetv2(spec: DatasetSpec, size: str) -> nn.Module:
    from torchvision.models import ShuffleNetV2

    net = ShuffleNetV2([4, 8, 4], SHUFFLE_CHANNELS[size], num_classes=spec.num_classes)
    c = SHUFFLE_CHANNELS[size][0]
    net.conv1 = nn.Sequential(nn.Conv2d(spec.shape[0], c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(True))
    net.maxpool = nn.Identity()
    return net


for _w, _name in ((0.5, "x0_5"), (1.0, "x1_0"), (1.4, "x1_4")):
    MODELS.register(f"mobilenetv2_{_name}")(partial(mobilenetv2, width=_w))
for _name in SHUFFLE_CHANNELS:
    MODELS.register(f"shufflenetv2_{_name}")(partial(shufflenetv2, size=_name))


# -- RepVGG-A ----------------------------------------------------------------------------------------------------
class RepVGGBlock(nn.Module):
    """ReLU(BN(conv3x3 x) + BN(conv1x1 x) + BN(x)); the identity branch only when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.dense = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout))
        self.pointwise = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False), nn.BatchNorm2d(cout))
        self.identity = nn.BatchNorm2d(cout) if cin == cout and stride == 1 else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.dense(x) + self.pointwise(x)
        return torch.relu(out if self.identity is None else out + self.identity(x))


REPVGG_A = {"a0": (0.75, 2.5), "a1": (1.0, 2.5), "a2": (1.5, 2.75)}


def repvgg(spec: DatasetSpec, variant: str) -> nn.Module:
    """RepVGG-A{0,1,2}: stages of 1, 2, 4, 14, 1 blocks, widths (min(64, 64a), 64a, 128a, 256a, 512b)."""
    a, b = REPVGG_A[variant]
    widths = [min(64, int(64 * a)), int(64 * a), int(128 * a), int(256 * a), int(512 * b)]
    blocks, strides = [1, 2, 4, 14, 1], [1, 1, 2, 2, 2]  # stride-1 stem and first stage for 32 x 32
    layers: list[nn.Module] = []
    c = spec.shape[0]
    for n, w, s in zip(blocks, widths, strides, strict=True):
        for i in range(n):
            layers.append(RepVGGBlock(c, w, s if i == 0 else 1))
            c = w
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, spec.num_classes))


for _name in REPVGG_A:
    MODELS.register(f"repvgg_{_name}")(partial(repvgg, variant=_name))

CIFAR_ZOO = ("resnet20", "resnet32", "resnet44", "resnet56", "vgg13_bn", "vgg16_bn", "vgg19_bn", "mobilenetv2_x0_5",
             "mobilenetv2_x1_0", "mobilenetv2_x1_4", "shufflenetv2_x0_5", "shufflenetv2_x1_0", "shufflenetv2_x2_0",
             "repvgg_a0", "repvgg_a1", "repvgg_a2")
