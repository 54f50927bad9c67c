"""The interface every smoothing distribution implements; nothing else knows how noise is drawn."""

from __future__ import annotations

from typing import Protocol

import torch


class Noise(Protocol):
    def sample(self, x: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        """Return ``n`` noisy copies ``x + eps_i`` of one input ``x`` (shape (n, *x.shape))."""
        ...
