"""Architectures by name. The normalisation layer lives inside the model, so inputs are [0, 1] pixels."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from rsbench.data.registry import DatasetSpec
from rsbench.errors import RsbenchError
from rsbench.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


class NormalizedModel(nn.Module):
    """``net((x - mean) / std)``; the base classifier f of randomized smoothing sees pixel-space inputs."""

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.net = net
        shape = (1, len(mean), 1, 1)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(shape), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)

    def forward_inplace(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` normalising in x's own memory (x is overwritten): the same numbers, no two
        batch-sized temporaries. For samplers that refill their buffer anyway."""
        return self.net(x.sub_(self.mean).div_(self.std))


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def full_params(arch: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """``params`` completed with the builder's defaults, so equal architectures compare equal."""
    builder = MODELS.get(arch)
    sig = inspect.signature(builder)
    names = [p for p in sig.parameters if p != "spec"]
    unknown = sorted(set(params or {}) - set(names))
    if unknown:
        raise RsbenchError(f"model '{arch}': unknown model.params {unknown}; valid: {names}")
    full = {p: sig.parameters[p].default for p in names if sig.parameters[p].default is not inspect.Parameter.empty}
    full.update(params or {})
    return {k: _plain(v) for k, v in full.items()}


def build_model(arch: str, spec: DatasetSpec, params: dict[str, Any] | None = None) -> NormalizedModel:
    """Build architecture ``arch`` for dataset ``spec`` (input shape, classes, normalisation)."""
    builder = MODELS.get(arch)
    try:
        net = builder(spec, **dict(params or {}))
    except TypeError as exc:
        raise RsbenchError(f"model '{arch}': bad model.params {dict(params or {})}: {exc}") from exc
    if getattr(net, "unnormalized", False):  # 1-Lipschitz nets: the bound must hold in pixel space
        return NormalizedModel(net, (0.0,) * len(spec.mean), (1.0,) * len(spec.std))
    return NormalizedModel(net, spec.mean, spec.std)


def prefers_channels_last(model: nn.Module, shape: tuple[int, ...] | torch.Size) -> bool:
    """Channels-last memory order suits convolutional models on (C, H, W) inputs (2x faster convs on CPU here)."""
    return len(shape) == 3 and any(isinstance(m, nn.Conv2d) for m in model.modules())


def check_input(x: torch.Tensor, spec: DatasetSpec, where: str) -> None:
    """Reject inputs whose shape does not match the model's or that hold non-finite pixels."""
    if tuple(x.shape) != tuple(spec.shape):
        raise RsbenchError(f"{where}: input shape {tuple(x.shape)} does not match the model's "
                           f"{tuple(spec.shape)} (dataset {spec.name})")
    if not torch.isfinite(x).all():
        raise RsbenchError(f"{where}: input holds non-finite pixels (NaN or inf)")


@contextmanager
def frozen_parameters(module: nn.Module) -> Iterator[None]:
    """Within the block, ``module``'s trainable parameters get no gradients; restored on exit."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
