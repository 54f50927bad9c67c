"""torchvision ImageNet classifiers (DSmooth Table 2); weights only from a local file (``model.weights_file``)."""

from __future__ import annotations

from functools import partial

from torch import nn

from rsbench.data.registry import DatasetSpec
from rsbench.models.registry import MODELS

IMAGENET_ARCHS = ("resnet50", "resnet152", "wide_resnet50_2", "wide_resnet101_2")


def _torchvision(spec: DatasetSpec, name: str) -> nn.Module:
    import torchvision.models as tvm

    return getattr(tvm, name)(weights=None, num_classes=spec.num_classes)


for _name in IMAGENET_ARCHS:
    MODELS.register(_name)(partial(_torchvision, name=_name))
