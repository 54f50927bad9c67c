"""Adversarial attacks by name, shared by training (adversarial training, fine-tuning), DSmooth's covariance
and the certify stage's attacked certified accuracy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from rsbench.attacks.l2 import l2_pgd
from rsbench.attacks.smoothed import smoothed_pgd
from rsbench.attacks.square import square_fgsm
from rsbench.errors import RsbenchError
from rsbench.registry import Registry

ATTACKS: Registry[Callable[..., torch.Tensor]] = Registry("attack")
ATTACKS.register("pgd_l2")(l2_pgd)
ATTACKS.register("square_fgsm")(square_fgsm)
ATTACKS.register("smoothed_pgd")(smoothed_pgd)  # on the soft smoothed classifier (SmoothAdv)


def check_attack(spec: Any, where: str) -> dict[str, Any]:
    """``spec`` as a dict after checking it names a registered attack and only that attack's parameters."""
    import inspect

    if not isinstance(spec, dict):
        raise RsbenchError(f"{where}={spec!r} is invalid: give {{name: <attack>, ...parameters}}, e.g. "
                           f"{{name: square_fgsm, eps_inf: 0.5, queries: 100, eps_l2: 0.5}}; attacks: "
                           f"{', '.join(ATTACKS)}")
    params = dict(spec)
    fn = ATTACKS.get(params.pop("name", None))
    valid = [p for p in inspect.signature(fn).parameters if p not in ("model", "x", "y", "generator")]
    unknown = sorted(set(params) - set(valid) - {"mix"})
    if unknown:
        raise RsbenchError(f"{where}: attack '{spec['name']}' has no parameters {unknown}; valid: {', '.join(valid)}")
    return dict(spec)


def run_attack(spec: dict[str, Any], model: nn.Module, x: torch.Tensor, y: torch.Tensor,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Adversarial examples for (x, y) from ``spec`` = {"name": ..., **parameters}."""
    params = dict(spec)
    fn = ATTACKS.get(params.pop("name", None))
    try:
        return fn(model, x, y, generator=generator, **params)
    except TypeError as exc:
        raise RsbenchError(f"attack '{spec.get('name')}': bad parameters {params}: {exc}") from exc


__all__ = ["ATTACKS", "check_attack", "l2_pgd", "run_attack", "smoothed_pgd", "square_fgsm"]
