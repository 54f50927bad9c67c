"""l2 projected gradient ascent on the cross-entropy loss (Madry et al. 2018), pixels kept in [0, 1].

One function covers the l2 attacks the papers use: 40-step PGD with ||delta||_2 <= 1 and step 0.01
(IDRS adversarial training) and a single fast-gradient step (``steps=1, step_size=eps,
random_start=False``; DSmooth's FGSM stage).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from rsbench.errors import check_count, check_positive
from rsbench.models.registry import frozen_parameters

_TINY = 1e-12


def _per_example_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).clamp_min(_TINY).view(-1, *([1] * (t.dim() - 1)))


def project_l2(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """delta scaled back onto the l2 ball of radius eps where it lies outside (per example)."""
    return delta * (eps / _per_example_norm(delta)).clamp(max=1.0)


def l2_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, step_size: float,
           random_start: bool = True, generator: torch.Generator | None = None,
           loss: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """x_adv = x + delta maximising CE(model(x_adv), y) over ||delta||_2 <= eps and x_adv in [0, 1].

    ``loss(x_adv)`` replaces the objective (a scalar; per-example terms summed, since each example's step is
    normalised on its own): the smoothed-classifier attack passes the soft smoothed classifier's loss.

    Each step: delta <- Proj_eps(delta + step_size * grad / ||grad||_2), then clip x + delta to [0, 1].
    ``random_start``: delta_0 has a uniformly random direction and a norm uniform in [0, eps] (as in
    torchattacks' PGDL2). The model's parameters get no gradient; its train/eval mode is left unchanged.
    Returns a detached tensor.
    """
    check_positive("eps", eps)
    check_count("steps", steps)
    check_positive("step_size", step_size)
    x = x.detach()
    if random_start:
        direction = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        radius = torch.rand((len(x),), generator=generator, device=x.device, dtype=x.dtype) * eps
        delta = direction / _per_example_norm(direction) * radius.view(-1, *([1] * (x.dim() - 1)))
        delta = (x + delta).clamp(0.0, 1.0) - x
    else:
        delta = torch.zeros_like(x)
    with frozen_parameters(model):
        for _ in range(steps):
            delta.requires_grad_(True)
            with torch.enable_grad():
                value = F.cross_entropy(model(x + delta), y) if loss is None else loss(x + delta)
                (grad,) = torch.autograd.grad(value, delta)
            step = grad / _per_example_norm(grad)
            delta = project_l2(delta.detach() + step_size * step, eps)
            delta = (x + delta).clamp(0.0, 1.0) - x
    return (x + delta).detach()
