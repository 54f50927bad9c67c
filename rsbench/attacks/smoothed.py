"""SmoothAdv's attack on the soft smoothed classifier (Salman et al. 2019, Sec. 3, the multi-noise attack).

The soft smoothed classifier of a base model f under noise delta is G(x) = E_delta[softmax(f(x + delta))],
estimated with m draws delta_1..delta_m that stay fixed for the whole attack. The attack solves

    x_adv = argmax_{||x' - x||_2 <= eps, x' in [0, 1]}  -log( (1/m) sum_i softmax(f(x' + delta_i))_y )

by l2 PGD (``rsbench.attacks.l2.l2_pgd`` with this loss), step 2 eps / steps unless given (the authors'
choice). It is an attack on the smoothed classifier, not on f: evaluated by PREDICT with fresh noise, its
accuracy is an upper bound that every certified accuracy at radius eps must stay under.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsbench.attacks.l2 import l2_pgd
from rsbench.errors import check_count, check_positive


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
