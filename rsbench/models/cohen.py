"""Cohen et al. (2019)'s released models, and the later repositories that kept their layout (SmoothAdv:
Hadisalman/smoothing-adversarial; consistency: jh-jeong/smoothing-consistency; SmoothMix: jh-jeong/smoothmix),
mapped onto rsbench's architectures.

Their ``checkpoint.pth.tar`` is ``{"arch", "state_dict", "epoch", "optimizer"}``; ``state_dict`` is that of
``Sequential(NormalizeLayer, [DataParallel](net))``, so the network's keys read ``1.module.<key>`` (or
``1.<key>`` without DataParallel). The NormalizeLayer holds no tensors, and its constants are Cohen's own:
CIFAR-10 std (0.2023, 0.1994, 0.2010), not the (0.2470, 0.2435, 0.2616) rsbench trains with, so an
imported model keeps Cohen's normalisation. ``cifar_resnet20/110`` is bearpaw's CIFAR ResNet (conv1, bn1,
layer1..3 of BasicBlocks with a 1x1-conv ``downsample``, avgpool 8, fc), the same network as rsbench's
``cifar_resnet`` up to key names; ``resnet50`` is torchvision's.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from rsbench.data.registry import DatasetSpec
from rsbench.errors import RsbenchError
from rsbench.models.registry import NormalizedModel, build_model, full_params

FORMAT = "cohen2019"
# Cohen's arch name -> (rsbench arch, params)
ARCHS: dict[str, tuple[str, dict[str, Any]]] = {
    "cifar_resnet20": ("cifar_resnet", {"depth": 20}),
    "cifar_resnet110": ("cifar_resnet", {"depth": 110}),
    "resnet50": ("resnet50", {}),
    "lenet": ("lenet", {}),
}
# Cohen's datasets.py normalisation constants, per dataset family
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "mnist": ((0.0,), (1.0,)),  # consistency / SmoothMix: Identity, no normalisation
}
_LAYER = re.compile(r"^layer([123])\.(\d+)\.(.*)$")


def is_cohen_checkpoint(blob: Any) -> bool:
    """A dict with ``arch`` and a ``state_dict`` whose keys start with ``1.`` (the net after the NormalizeLayer)."""
    return (isinstance(blob, dict) and isinstance(blob.get("arch"), str) and isinstance(blob.get("state_dict"), dict)
            and bool(blob["state_dict"]) and all(str(k).startswith("1.") for k in blob["state_dict"]))


def _net_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip ``1.`` and DataParallel's ``module.``."""
    out = {}
    for key, value in state.items():
        key = key[2:]
        out[key[7:] if key.startswith("module.") else key] = value
    return out


def cifar_resnet_keys(state: dict[str, torch.Tensor], depth: int) -> dict[str, torch.Tensor]:
    """bearpaw/Cohen CIFAR ResNet keys -> rsbench ``CifarResNet`` keys (layerL.i -> blocks.(L-1)n+i)."""
    n = (depth - 2) // 6
    out = {}
    for key, value in state.items():
        m = _LAYER.match(key)
        if m:
            layer, i, rest = int(m[1]), int(m[2]), m[3]
            key = f"blocks.{(layer - 1) * n + i}.{rest.replace('downsample.', 'shortcut.')}"
        elif key.startswith("conv1."):
            key = "conv." + key[len("conv1."):]
        elif key.startswith("bn1."):
            key = "bn." + key[len("bn1."):]
        out[key] = value
    return out


def load_cohen(path: str | Path, blob: dict[str, Any], spec: DatasetSpec) -> tuple[NormalizedModel, dict[str, Any]]:
    """Build the rsbench architecture for Cohen's ``blob["arch"]`` and load its weights; refuse what doesn't fit."""
    cohen_arch = blob["arch"]
    if cohen_arch not in ARCHS:
        raise RsbenchError(f"model.weights_file {path}: Cohen et al. arch {cohen_arch!r} is not supported; "
                           f"supported: {', '.join(ARCHS)}")
    if spec.family not in NORMALIZATION:
        raise RsbenchError(f"model.weights_file {path}: Cohen-layout models exist for "
                           f"{', '.join(NORMALIZATION)}, not {spec.family}")
    arch, params = ARCHS[cohen_arch]
    params = full_params(arch, params)
    net = build_model(arch, spec, params).net
    load_released(path, net, _net_keys(blob["state_dict"]), arch, params, f"Cohen arch {cohen_arch}")
    mean, std = NORMALIZATION[spec.family]
    noise = re.search(r"noise_(\d+(?:\.\d+)?)", str(path))  # Cohen's folders: models/cifar10/resnet110/noise_0.25/
    meta = {"arch": arch, "params": params, "dataset": spec.name, "family": spec.family, "format": FORMAT,
            "cohen_arch": cohen_arch, "normalization": {"mean": list(mean), "std": list(std)},
            "train_noise_sigma": float(noise[1]) if noise else None}
    return NormalizedModel(net, mean, std), meta


def load_released(path: str | Path, net: torch.nn.Module, state: dict[str, torch.Tensor], arch: str,
                  params: dict[str, Any], what: str) -> None:
    """Load a released network's ``state`` into rsbench's ``net`` (CIFAR ResNet keys mapped first); keys or
    tensors that do not fit are refused in one line naming the first of them and ``what`` the file is."""
    if arch == "cifar_resnet":
        state = cifar_resnet_keys(state, params["depth"])
    missing, unexpected = _mismatch(net.state_dict(), state)
    if missing or unexpected:
        raise RsbenchError(f"model.weights_file {path}: its keys don't fit {arch} {params} ({what}): "
                           f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, unexpected "
                           f"{unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        raise RsbenchError(f"model.weights_file {path}: its tensors don't fit {arch} {params}: "
                           f"{(lines[1] if len(lines) > 1 else lines[0]).strip()}") from exc


def _mismatch(expected: dict[str, Any], given: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Keys the network needs but the file lacks, and keys the file has but the network does not.

    ``num_batches_tracked`` (absent from checkpoints older than PyTorch 0.4.1) is filled with 0.
    """
    for key in expected:
        if key.endswith("num_batches_tracked") and key not in given:
            given[key] = torch.tensor(0)
    return sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
