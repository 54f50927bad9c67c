"""torchvision's ImageNet ResNet-50. Weights come only from a local file (``model.weights_file``)."""

from __future__ import annotations

from torch import nn

from rsbench.data.registry import DatasetSpec
from rsbench.models.registry import MODELS


@MODELS.register("resnet50")
def resnet50(spec: DatasetSpec) -> nn.Module:
    from torchvision.models import resnet50 as tv_resnet50

    return tv_resnet50(weights=None, num_classes=spec.num_classes)
