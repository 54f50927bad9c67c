"""i.i.d. Laplace noise eps_i ~ Laplace(0, b) per pixel (Teng et al. 2020's l1 smoothing, DSmooth's LSmooth)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rsbench.errors import check_positive


@dataclass(frozen=True)
class LaplaceNoise:
    scale: float  # b: density exp(-|e| / b) / (2b), standard deviation sqrt(2) b

    def __post_init__(self) -> None:
        check_positive("scale", self.scale)

    def fill(self, out: torch.Tensor, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """out <- x + eps by inversion: u ~ U(-1/2, 1/2), eps = -b sign(u) log(1 - 2|u|).

        1 - 2|u| is floored at the dtype's smallest normal number, so u = -1/2 (possible in float32 once in
        2^24 draws) gives a large finite value instead of inf.
        """
        u = out.uniform_(-0.5, 0.5, generator=generator)
        sign = torch.sign(u)
        tiny = torch.finfo(out.dtype).tiny
        magnitude = u.abs_().mul_(-2.0).add_(1.0).clamp_(min=tiny).log_().mul_(-self.scale)
        return magnitude.mul_(sign).add_(x)

    def sample(self, x: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.fill(torch.empty((n, *x.shape), device=x.device, dtype=x.dtype), x, generator)
