"""SmoothAdv's attack on the soft smoothed classifier (Salman et al. 2019, Sec. 3, the multi-noise attack).

The soft smoothed classifier of a base model f under noise delta is G(x) = E_delta[softmax(f(x + delta))],
estimated with m draws delta_1..delta_m that stay fixed for the whole attack. The attack solves

    x_adv = argmax_{||x' - x||_2 <= eps, x' in [0, 1]}  -log( (1/m) sum_i softmax(f(x' + delta_i))_y )

by l2 PGD (``rsbench.attacks.l2.l2_pgd`` with this loss), step 2 eps / steps unless given (the authors'
choice), or by DDN (:func:`smoothed_ddn`, the paper's other attack). It is an attack on the smoothed
classifier, not on f: evaluated by PREDICT with fresh noise, its accuracy is an upper bound that every
certified accuracy at radius eps must stay under.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsbench.attacks.l2 import _per_example_norm, l2_pgd, project_l2
from rsbench.errors import check_count, check_positive
from rsbench.models.registry import frozen_parameters


def soft_smoothed_probs(model: nn.Module, x: Tensor, noises: Tensor) -> Tensor:
    """(1/m) sum_i softmax(f(x + noises[i])) for a batch x (B, ...) and noises (m, B, ...): shape (B, C)."""
    m = len(noises)
    logits = model((x.unsqueeze(0) + noises).flatten(0, 1))
    return logits.softmax(1).view(m, len(x), -1).mean(0)


def smoothed_nll(model: nn.Module, noises: Tensor, y: Tensor) -> Callable[[Tensor], Tensor]:
    """x' -> sum_b -log G(x'_b)_{y_b}, G estimated with the fixed ``noises`` (the attack's objective)."""
    return lambda x_adv: F.nll_loss(soft_smoothed_probs(model, x_adv, noises).clamp_min(1e-20).log(), y,
                                    reduction="sum")


def smoothed_pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, sigma: float, m: int = 8, steps: int = 20,
                 step_size: float | None = None, random_start: bool = True,
                 generator: torch.Generator | None = None) -> Tensor:
    """SmoothAdv's PGD against the soft smoothed classifier under N(0, sigma^2 I), m noise draws."""
    check_positive("sigma", sigma)
    check_count("m", m)
    check_count("steps", steps)
    noises = sigma * torch.randn((m, *x.shape), generator=generator, device=x.device, dtype=x.dtype)
    return l2_pgd(model, x, y, eps, steps, step_size or 2 * eps / steps, random_start, generator,
                  loss=smoothed_nll(model, noises, y))


def smoothed_ddn(model: nn.Module, x: Tensor, y: Tensor, noises: Tensor, max_norm: float, steps: int,
                 gamma: float = 0.05, init_norm: float | None = None, levels: int | None = 256) -> Tensor:
    """DDN (Rony et al. 2019, Alg. 1) on the soft smoothed classifier G of the fixed ``noises`` (m, B, ...):
    the smallest l2 perturbation that changes G's decision, capped at ``max_norm`` (SmoothAdv, Sec. 4).

    delta_0 = 0, eps_0 = init_norm (default max_norm, as SmoothAdv's training sets it); step k = 1..K:
    g = grad of -log G(x + delta)_y, delta <- delta + alpha_k g / ||g||_2 with alpha_k = 0.01 + 0.99 (1 +
    cos(pi k / K)) / 2 (cosine from 1 to 0.01), eps <- eps (1 - gamma) if x + delta was adversarial before the
    step, else eps (1 + gamma) (never beyond the farthest point of [0, 1]^d), delta <- eps delta / ||delta||,
    x + delta quantised to ``levels`` grey levels and clipped to [0, 1]. Returns x + the smallest adversarial
    delta found, projected onto the ball of radius ``max_norm``; x itself where none was found (a detached
    tensor). SmoothAdv's code runs this norm adaptation for one noise draw only; with m > 1 its "DDN" is the
    PGD of :func:`smoothed_pgd`.
    """
    check_positive("max_norm", max_norm)
    check_count("steps", steps)
    x = x.detach()
    shape = (-1, *([1] * (x.dim() - 1)))
    radius = torch.full((len(x),), float(init_norm or max_norm), device=x.device, dtype=x.dtype)
    farthest = torch.maximum(x, 1 - x).flatten(1).norm(dim=1)
    best, best_norm = torch.zeros_like(x), farthest.clone()
    delta = torch.zeros_like(x)
    with frozen_parameters(model):
        for k in range(1, steps + 1):
            alpha = 0.01 + 0.99 * (1 + math.cos(math.pi * k / steps)) / 2
            delta.requires_grad_(True)
            with torch.enable_grad():
                probs = soft_smoothed_probs(model, x + delta, noises)
                loss = F.nll_loss(probs.clamp_min(1e-20).log(), y, reduction="sum")
                (grad,) = torch.autograd.grad(loss, delta)
            delta = delta.detach()
            adversarial = probs.detach().argmax(1) != y
            norm = delta.flatten(1).norm(dim=1)
            better = adversarial & (norm < best_norm)
            best[better], best_norm[better] = delta[better], norm[better]
            delta = delta + alpha * grad / _per_example_norm(grad)
            radius = torch.minimum(radius * torch.where(adversarial, 1 - gamma, 1 + gamma), farthest)
            delta = delta * (radius.view(shape) / _per_example_norm(delta))
            moved = x + delta
            if levels:
                moved = (moved * (levels - 1)).round() / (levels - 1)
            delta = moved.clamp(0.0, 1.0) - x
    return (x + project_l2(best, max_norm)).clamp(0.0, 1.0).detach()
