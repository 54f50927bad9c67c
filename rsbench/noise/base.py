"""The interface every smoothing distribution implements; nothing else knows how noise is drawn."""

from __future__ import annotations

from typing import Protocol

import torch


class Noise(Protocol):
    """What the sampler (:mod:`rsbench.certify.sampling`) calls: :meth:`fill` for every noise, in place, one
    seeded block at a time; a :class:`ScaledGaussian` (eps = s z) also offers ``scales`` and ``draws_scales``, which
    the pushforward and fused-kernel paths use. :meth:`sample` is the allocating form, for tests and attacks."""

    def fill(self, out: torch.Tensor, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Write ``len(out)`` noisy copies ``x + eps_i`` into ``out`` (shape (m, *x.shape)); return ``out``."""
        ...

    def sample(self, x: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        """Return ``n`` noisy copies ``x + eps_i`` of one input ``x`` (shape (n, *x.shape))."""
        ...


class ScaledGaussian:
    """Noise eps = s * z with z ~ N(0, I) and a per-draw scale s (fixed, or a random mixture component).

    Subclasses define :meth:`scales`. :meth:`fill` writes x + eps into a preallocated buffer in place
    (no per-batch allocation); the linear pushforward sampler uses :meth:`scales` with its own z.
    """

    draws_scales = True  # whether scales() consumes the generator (False: a constant scale, drawn once)

    def scales(self, n: int, generator: torch.Generator, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        raise NotImplementedError

    def fill(self, out: torch.Tensor, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """out <- x + s_i z_i for each row i of ``out``; returns ``out``."""
        s = self.scales(len(out), generator, out.device, out.dtype)
        out.normal_(generator=generator)
        return torch.addcmul(x, s.view(-1, *([1] * x.dim())), out, out=out)  # one pass: x + s * z

    def sample(self, x: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.fill(torch.empty((n, *x.shape), device=x.device, dtype=x.dtype), x, generator)
