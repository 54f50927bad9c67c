"""Monte Carlo over the base classifier under noise, streamed in fixed-size seeded blocks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rsbench.certify.seeding import make_generator
from rsbench.noise.base import Noise

BLOCK = 100  # samples per seeded noise block; forward batches are whole blocks (or parts of one)


@torch.inference_mode()
def class_counts(model: nn.Module, noise: Noise, x: torch.Tensor, n: int, num_classes: int,
                 batch: int, seed: int, key: tuple[int, ...], temperature: float | None = None) -> torch.Tensor:
    """Sum over n draws eps_i of the base classifier's output at x + eps_i, one entry per class.

    Hard smoothing (``temperature=None``): class counts of argmax f(x + eps_i), int64.
    Soft smoothing: sums of softmax(f(x + eps_i) / temperature), float64; divide by n for the mean.

    Noise for samples [j*BLOCK, (j+1)*BLOCK) comes from a generator seeded by (seed, *key, j), so the
    result is the same for any ``batch``. The forward batch is ``batch`` rounded down to whole blocks
    (or a slice of one block when ``batch < BLOCK``). Memory is flat in n.
    """
    dtype = torch.long if temperature is None else torch.float64
    total = torch.zeros(num_classes, dtype=dtype, device=x.device)
    blocks_per_forward = max(1, batch // BLOCK)
    n_blocks = -(-n // BLOCK)
    for start in range(0, n_blocks, blocks_per_forward):
        chunk = [
            noise.sample(x, min(BLOCK, n - j * BLOCK), make_generator(seed, (*key, j), x.device))
            for j in range(start, min(start + blocks_per_forward, n_blocks))
        ]
        samples = torch.cat(chunk) if len(chunk) > 1 else chunk[0]
        for lo in range(0, len(samples), batch):
            logits = model(samples[lo:lo + batch])
            if temperature is None:
                total += torch.bincount(logits.argmax(dim=1), minlength=num_classes)
            else:
                total += torch.softmax(logits.double() / temperature, dim=1).sum(dim=0)
    return total.cpu()


@dataclass
class PointSampler:
    """Monte Carlo access to one test point for a method: counts or soft-score sums under any noise.

    Every call is seeded by (seed, idx, phase, *stream), so a method that draws from several noise
    distributions (e.g. one stream per mixture component) gets independent, reproducible samples.
    """

    model: nn.Module
    noise: Noise
    x: torch.Tensor
    idx: int
    num_classes: int
    batch: int
    seed: int

    def counts(self, num: int, phase: int, noise: Noise | None = None, stream: tuple[int, ...] = (),
               temperature: float | None = None) -> torch.Tensor:
        return class_counts(self.model, noise or self.noise, self.x, num, self.num_classes, self.batch,
                            self.seed, (self.idx, phase, *stream), temperature)

    def hard(self, num: int, phase: int) -> torch.Tensor:
        """Class counts under the method's own noise (the CountsFn of Cohen's algorithms)."""
        return self.counts(num, phase)
