"""Margin certificates of Smoothed Robustness Analysis (smoothed_robustness_analysis.md, Sec. 3-4), pure functions.

For an L-Lipschitz (l2) classifier with outputs o, the margin loss L_M = max_{i != c} o_i - o_c is
sqrt(2) L-Lipschitz (Prop. 5, alpha_2 = sqrt 2), so
    eq. (6)  eps_M = -L_M(x, c) / (sqrt(2) L)                     (a sound certificate of the base classifier)
    eq. (5)  eps_SM = -E[L_M(x + noise, c)] / (sqrt(2) L)          (MSCR: smoothed margin)
    eq. (7)  E[L_M] ~ closed form from output means/variances (independent normal outputs; an approximation)
    eq. (9)  Zhen et al.'s RS radius approximation sigma_x (mu_c - mu_1) / sqrt(var_c + var_1)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

ALPHA_L2 = math.sqrt(2.0)


def _split(values: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """(value of the correct class, the other classes with the correct one masked to -inf)."""
    correct = values.gather(1, y.view(-1, 1)).squeeze(1)
    others = values.masked_fill(torch.nn.functional.one_hot(y, values.shape[1]).bool(), float("-inf"))
    return correct, others


def margin_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Eq. (4): L_M = max_{i != c} o_i - o_c per example (negative when correctly classified)."""
    correct, others = _split(logits, y)
    return others.amax(dim=1) - correct


def margin_radius(logits: Tensor, y: Tensor, lipschitz: float = 1.0) -> Tensor:
    """Eq. (6): -L_M / (sqrt(2) L); negative for misclassified points."""
    return -margin_loss(logits, y) / (ALPHA_L2 * lipschitz)


def smoothed_margin(mean: Tensor, var: Tensor, y: Tensor) -> Tensor:
    """Eq. (7): E[max(o_1, o_2)] - mu_c for independent normal outputs, o_1 / o_2 the incorrect classes with the
    largest / second largest mean: sqrt(s/2pi) exp(-(mu1-mu2)^2 / 2s) + mu2 + (mu1-mu2)/2 (1 + erf((mu1-mu2)/sqrt(2s))),
    s = var1 + var2 (Clark's formula for the mean of the maximum of two normals)."""
    mu_c, others = _split(mean, y)
    top2 = others.topk(2, dim=1)
    mu1, mu2 = top2.values[:, 0], top2.values[:, 1]
    v1, v2 = var.gather(1, top2.indices[:, :1]).squeeze(1), var.gather(1, top2.indices[:, 1:2]).squeeze(1)
    s = (v1 + v2).clamp_min(1e-30)
    diff = mu1 - mu2
    return (torch.sqrt(s / (2 * math.pi)) * torch.exp(-diff.square() / (2 * s)) + mu2
            + diff / 2 * (1 + torch.erf(diff / torch.sqrt(2 * s))) - mu_c)


def mscr(mean: Tensor, var: Tensor, y: Tensor, lipschitz: float = 1.0) -> Tensor:
    """Eq. (5) with eq. (7): the Margin Smoothed Certified Radius -E[L_M] / (sqrt(2) L)."""
    return -smoothed_margin(mean, var, y) / (ALPHA_L2 * lipschitz)


def zhen_radius(mean: Tensor, var: Tensor, y: Tensor, sigma_x: float) -> Tensor:
    """Eq. (9): sigma_x (mu_c - mu_1) / sqrt(var_c + var_1), mu_1 the largest incorrect mean."""
    mu_c, others = _split(mean, y)
    idx = others.argmax(dim=1, keepdim=True)
    mu1, v1 = mean.gather(1, idx).squeeze(1), var.gather(1, idx).squeeze(1)
    vc = var.gather(1, y.view(-1, 1)).squeeze(1)
    return sigma_x * (mu_c - mu1) / torch.sqrt((vc + v1).clamp_min(1e-30))
