"""Mixtures and sums of isotropic Gaussians (the MoG paper's two readings of its noise)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rsbench.errors import check_positive, require
from rsbench.noise.base import ScaledGaussian
from rsbench.noise.gaussian import GaussianNoise


def evenly_spaced_sigmas(k: int, sigma_min: float, sigma_max: float) -> tuple[float, ...]:
    """K standard deviations evenly spaced over the closed interval [sigma_min, sigma_max]; K = 1 -> sigma_max."""
    require(isinstance(k, int) and k >= 1, f"K={k!r} is invalid: it must be an integer >= 1")
    check_positive("sigma_min", sigma_min)
    check_positive("sigma_max", sigma_max)
    require(sigma_min <= sigma_max, f"sigma_min={sigma_min} must not exceed sigma_max={sigma_max}")
    if k == 1:
        return (float(sigma_max),)
    step = (sigma_max - sigma_min) / (k - 1)
    return tuple(float(sigma_min + i * step) for i in range(k - 1)) + (float(sigma_max),)


def sum_of_gaussians(sigmas: Sequence[float]) -> GaussianNoise:
    """eps = eps_1 + ... + eps_K with independent eps_k ~ N(0, sigma_k^2 I) (the paper's K-fold convolution).

    A sum of independent centred Gaussians is N(0, sum_k sigma_k^2 I), so it is drawn as one Gaussian
    with sigma = sqrt(sum_k sigma_k^2): the same distribution, K times cheaper.
    """
    return GaussianNoise(math.sqrt(sum(float(s) ** 2 for s in sigmas)))


@dataclass(frozen=True)
class GaussianMixtureNoise(ScaledGaussian):
    """Each draw picks component k with probability w_k, then eps ~ N(0, sigma_k^2 I).

    With K = 1 the draws are exactly those of :class:`GaussianNoise` (same generator, same numbers).
    """

    sigmas: tuple[float, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        require(len(self.sigmas) == len(self.weights) >= 1, "need one weight per sigma")
        for s in self.sigmas:
            check_positive("sigma", s)
        require(all(w >= 0 for w in self.weights) and abs(sum(self.weights) - 1.0) < 1e-9,
                f"weights {self.weights} must be non-negative and sum to 1")

    @property
    def draws_scales(self) -> bool:
        return len(self.sigmas) > 1

    def component(self, k: int) -> GaussianNoise:
        return GaussianNoise(self.sigmas[k])

    def scales(self, n: int, generator: torch.Generator, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The sigma of each draw's component (K = 1 draws no component, so it matches GaussianNoise)."""
        if len(self.sigmas) == 1:
            return torch.full((n,), self.sigmas[0], device=device, dtype=dtype)
        w = torch.tensor(self.weights, dtype=torch.float64, device=device)
        k = torch.multinomial(w, n, replacement=True, generator=generator)
        return torch.tensor(self.sigmas, dtype=dtype, device=device)[k]


def stratified_allocation(n: int, weights: Sequence[float]) -> list[int]:
    """Split n samples over components proportionally to the weights (largest remainders); each gets >= 1."""
    raw = [n * w for w in weights]
    alloc = [math.floor(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - alloc[i], reverse=True)[: n - sum(alloc)]:
        alloc[i] += 1
    require(all(a >= 1 for a in alloc), f"n={n} is too small to give each of {len(weights)} components a sample")
    return alloc
