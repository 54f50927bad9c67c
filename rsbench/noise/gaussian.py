"""Isotropic Gaussian noise eps ~ N(0, sigma^2 I) in pixel space (Cohen et al. 2019)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rsbench.errors import check_positive


@dataclass(frozen=True)
class GaussianNoise:
    sigma: float

    def __post_init__(self) -> None:
        check_positive("sigma", self.sigma)

    def sample(self, x: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        eps = torch.randn((n, *x.shape), generator=generator, device=x.device, dtype=x.dtype)
        return eps.mul_(self.sigma).add_(x)
