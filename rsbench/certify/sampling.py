"""Monte Carlo class counts of the base classifier under noise, streamed in fixed-size seeded blocks."""

from __future__ import annotations

import torch
from torch import nn

from rsbench.certify.seeding import make_generator
from rsbench.noise.base import Noise

BLOCK = 100  # samples per seeded noise block; forward batches are whole blocks (or parts of one)


@torch.inference_mode()
def class_counts(model: nn.Module, noise: Noise, x: torch.Tensor, n: int, num_classes: int,
                 batch: int, seed: int, key: tuple[int, ...]) -> torch.Tensor:
    """Counts of argmax f(x + eps_i) over n draws, as an int64 tensor of length num_classes.

    Noise for samples [j*BLOCK, (j+1)*BLOCK) comes from a generator seeded by (seed, *key, j), so the
    counts are the same for any ``batch``. The forward batch is ``batch`` rounded down to whole blocks
    (or a slice of one block when ``batch < BLOCK``). Memory is flat in n.
    """
    counts = torch.zeros(num_classes, dtype=torch.long, device=x.device)
    blocks_per_forward = max(1, batch // BLOCK)
    n_blocks = -(-n // BLOCK)
    for start in range(0, n_blocks, blocks_per_forward):
        chunk = [
            noise.sample(x, min(BLOCK, n - j * BLOCK), make_generator(seed, (*key, j), x.device))
            for j in range(start, min(start + blocks_per_forward, n_blocks))
        ]
        samples = torch.cat(chunk) if len(chunk) > 1 else chunk[0]
        for lo in range(0, len(samples), batch):
            preds = model(samples[lo:lo + batch]).argmax(dim=1)
            counts += torch.bincount(preds, minlength=num_classes)
    return counts.cpu()
