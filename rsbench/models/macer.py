"""MACER's released models (RuntianZ/macer), mapped onto rsbench's architectures.

Their checkpoint is ``{"net": base_model.state_dict(), "epoch": int}`` with no prefix (the state of the bare
network, saved outside DataParallel) and no normalisation anywhere: pixels in [0, 1] enter the network as they
are (their transforms are ToTensor only). ``resnet110`` (CIFAR-10, SVHN) is the bearpaw CIFAR ResNet with
Cohen's key names (conv1, bn1, layerL.i, downsample, fc); ``LeNet`` (MNIST) is rsbench's ``lenet``, key for key.
The architecture is read off the keys: the depth of a ResNet from its number of blocks per stage.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from rsbench.data.registry import DatasetSpec
from rsbench.errors import RsbenchError
from rsbench.models.cohen import load_released
from rsbench.models.registry import NormalizedModel, build_model, full_params

FORMAT = "macer2020"
_BLOCK = re.compile(r"^layer1\.(\d+)\.")


def is_macer_checkpoint(blob: Any) -> bool:
    """``{"net": state_dict, "epoch": ...}`` with unprefixed keys."""
    return (isinstance(blob, dict) and isinstance(blob.get("net"), dict) and "epoch" in blob and bool(blob["net"])
            and all(isinstance(v, torch.Tensor) for v in blob["net"].values()))


def infer_arch(state: dict[str, torch.Tensor]) -> tuple[str, dict[str, Any]]:
    """(rsbench arch, params) of a MACER state dict: LeNet by its fc1, a CIFAR ResNet by its block count."""
    if {"conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"} <= set(state) and state["conv1.weight"].dim() == 4 \
            and state["conv1.weight"].shape[0] == 20:
        return "lenet", {}
    blocks = {int(m[1]) for k in state if (m := _BLOCK.match(k))}
    if blocks:
        return "cifar_resnet", {"depth": 6 * (max(blocks) + 1) + 2}
    raise RsbenchError(f"a MACER checkpoint whose keys fit neither its LeNet nor its CIFAR ResNet: "
                       f"{sorted(state)[:4]}...")


def load_macer(path: str | Path, blob: dict[str, Any], spec: DatasetSpec) -> tuple[NormalizedModel, dict[str, Any]]:
    """Build the architecture the keys name and load the weights; refuse what does not fit, naming the keys."""
    state = dict(blob["net"])
    arch, params = infer_arch(state)
    params = full_params(arch, params)
    net = build_model(arch, spec, params).net
    load_released(path, net, state, arch, params, "a MACER checkpoint")
    channels = spec.shape[0]
    meta = {"arch": arch, "params": params, "dataset": spec.name, "family": spec.family, "format": FORMAT,
            "normalization": {"mean": [0.0] * channels, "std": [1.0] * channels}, "epoch": int(blob["epoch"]),
            "train_noise_sigma": None}
    return NormalizedModel(net, (0.0,) * channels, (1.0,) * channels), meta
