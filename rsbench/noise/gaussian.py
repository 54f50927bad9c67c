"""Isotropic Gaussian noise eps ~ N(0, sigma^2 I) in pixel space (Cohen et al. 2019)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rsbench.errors import check_positive
from rsbench.noise.base import ScaledGaussian


@dataclass(frozen=True)
class GaussianNoise(ScaledGaussian):
    sigma: float
    draws_scales = False  # a class attribute, not a field

    def __post_init__(self) -> None:
        check_positive("sigma", self.sigma)

    def scales(self, n: int, generator: torch.Generator, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return torch.full((n,), self.sigma, device=device, dtype=dtype)
