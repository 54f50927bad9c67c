"""DSmooth's multi-attack SQUARE + FGSM (dsmooth_mahalanobis.md, Sec. 3.1 / 5).

Square attack (Andriushchenko et al. 2020; l_inf, score-based, from torchattacks) followed by one l2
fast-gradient step on its output. Pixels stay in [0, 1].
"""

from __future__ import annotations

import torch
from torch import nn

from rsbench.attacks.l2 import l2_pgd
from rsbench.errors import check_positive, require


def square_fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_inf: float = 0.5, queries: int = 5000,
                eps_l2: float = 0.5, seed: int = 0, generator: torch.Generator | None = None) -> torch.Tensor:
    """x_adv = FGM_l2(Square_linf(x)): ``queries`` Square iterations within ||.||_inf <= eps_inf (skipped when
    0), then one step of l2 length eps_l2 along the normalised loss gradient. Deterministic given ``seed``."""
    check_positive("eps_inf", eps_inf)
    require(queries >= 0, f"queries={queries} must be >= 0")
    was_training = model.training
    model.eval()
    try:
        x_adv = x.detach()
        if queries:
            import torchattacks

            atk = torchattacks.Square(model, norm="Linf", eps=float(eps_inf), n_queries=int(queries),
                                      seed=int(seed), verbose=False)
            x_adv = atk(x_adv, y).detach()
        if eps_l2 > 0:
            x_adv = l2_pgd(model, x_adv, y, eps=eps_l2, steps=1, step_size=eps_l2, random_start=False)
    finally:
        model.train(was_training)
    return x_adv
