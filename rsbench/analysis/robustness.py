"""Robustness curves and their areas (smoothed_robustness_analysis.md, App. B), pure functions where possible.

- certified-radius survival curve F(r) = fraction of test points correctly classified with radius >= r, and
  AUC_CR = 0.5 dr sum_j (F((j+1) dr) + F(j dr)) (B.1; a fraction, so it is the average certified radius up to
  discretisation);
- noise accuracy NoiseAcc(sigma_j), sigma_j = j dsigma, and its normalised version (B.2)
      NoiseAcc' = (1 - a_j) NoiseAcc / (1 - a_j NoiseAcc),
      a_j = 1 - (NoiseAcc_j - min NoiseAcc) / (NoiseAcc_0 - min NoiseAcc),
  whose trapezoid area is AUC_GN;
- linear corruption accuracy (Jang et al. 2021, B.3): I = a x + (1 - a) n, n = 1/2 + N(0, (6/255)^2) per pixel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from rsbench.progress import progress


def survival(radius: np.ndarray, correct: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """F(r) on ``grid``: fraction of points with ``correct`` and ``radius >= r``."""
    ok = np.asarray(correct, dtype=bool)
    rad = np.asarray(radius, dtype=float)
    return np.array([float(np.mean(ok & (rad >= r))) for r in grid])


def auc_cr(radius: np.ndarray, correct: np.ndarray, step: float) -> float:
    """AUC_CR (B.1): trapezoid area of the survival curve on the grid j * step until it reaches 0."""
    top = float(np.max(np.where(np.asarray(correct, bool), radius, 0.0), initial=0.0))
    grid = np.arange(0.0, top + 2 * step, step)
    f = survival(radius, correct, grid)
    return float(0.5 * step * np.sum(f[1:] + f[:-1]))


def normalized_noise_accuracy(acc: Sequence[float]) -> np.ndarray:
    """NoiseAcc' of B.2: same value at sigma = 0, the floor (about 1/|C|) mapped to 0."""
    acc = np.asarray(acc, dtype=float)
    span = acc[0] - acc.min()
    if span <= 0:
        return np.where(np.arange(len(acc)) == 0, acc, 0.0)
    a = 1.0 - (acc - acc.min()) / span
    return (1.0 - a) * acc / (1.0 - a * acc)


def auc_gn(acc: Sequence[float], step: float) -> float:
    """AUC_GN (B.2): trapezoid area of the normalised noise accuracy curve with spacing ``step``."""
    norm = normalized_noise_accuracy(acc)
    return float(0.5 * step * np.sum(norm[1:] + norm[:-1]))


@torch.inference_mode()
def noise_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float, draws: int,
                   generator: torch.Generator, batch: int = 2000) -> float:
    """Mean accuracy over ``draws`` N(0, sigma^2 I) draws per input (B.2 steps 3-4)."""
    right = 0
    for _ in range(draws):
        for lo in range(0, len(x), batch):
            xb = x[lo:lo + batch]
            noisy = xb + sigma * torch.randn(xb.shape, generator=generator, device=xb.device) if sigma > 0 else xb
            right += int((model(noisy).argmax(1) == y[lo:lo + batch]).sum())
    return right / (draws * len(x))


def noise_accuracy_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: float, draws: int, seed: int,
                         num_classes: int, cutoff: float = 0.03, max_steps: int = 100) -> list[float]:
    """NoiseAcc at sigma = 0, step, 2 step, ... until it falls below 1/|C| + cutoff (B.2 step 5)."""

    g = torch.Generator(device=x.device).manual_seed(seed)
    curve = [noise_accuracy(model, x, y, 0.0, 1, g)]
    bar = progress(desc="noise accuracy", unit="sigma")
    while curve[-1] >= 1.0 / num_classes + cutoff and len(curve) < max_steps:
        curve.append(noise_accuracy(model, x, y, step * len(curve), draws, g))
        bar.update(1)
        bar.set_postfix(sigma=f"{step * (len(curve) - 1):g}", acc=f"{curve[-1]:.3f}", refresh=False)
    bar.close()
    return curve


@torch.inference_mode()
def linear_corruption_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, alphas: Sequence[float],
                            seed: int, noise_std: float = 6 / 255) -> list[float]:
    """Accuracy on a x + (1 - a) n with a grey noisy image n = 1/2 + N(0, noise_std^2) per input (B.3)."""
    g = torch.Generator(device=x.device).manual_seed(seed)
    out = []
    for a in alphas:
        grey = 0.5 + noise_std * torch.randn(x.shape, generator=g, device=x.device)
        out.append(float((model(a * x + (1 - a) * grey).argmax(1) == y).float().mean()))
    return out
