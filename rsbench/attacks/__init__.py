"""Adversarial attacks by name, shared by training (adversarial training, fine-tuning), DSmooth's covariance
and the certify stage's attacked certified accuracy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from rsbench.attacks.l2 import l2_pgd
from rsbench.attacks.square import square_fgsm
from rsbench.errors import RsbenchError
from rsbench.registry import Registry

ATTACKS: Registry[Callable[..., torch.Tensor]] = Registry("attack")
ATTACKS.register("pgd_l2")(l2_pgd)
ATTACKS.register("square_fgsm")(square_fgsm)


def run_attack(spec: dict[str, Any], model: nn.Module, x: torch.Tensor, y: torch.Tensor,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Adversarial examples for (x, y) from ``spec`` = {"name": ..., **parameters}."""
    params = dict(spec)
    fn = ATTACKS.get(params.pop("name", None))
    try:
        return fn(model, x, y, generator=generator, **params)
    except TypeError as exc:
        raise RsbenchError(f"attack '{spec.get('name')}': bad parameters {params}: {exc}") from exc


__all__ = ["ATTACKS", "l2_pgd", "run_attack", "square_fgsm"]
