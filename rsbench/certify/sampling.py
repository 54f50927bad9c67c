"""Monte Carlo over the base classifier under noise, streamed in fixed-size seeded blocks."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from rsbench.certify.pushforward import LinearPushforward
from rsbench.certify.seeding import block_seeds
from rsbench.errors import RsbenchError
from rsbench.noise.base import Noise, ScaledGaussian

BLOCK = 100  # samples per seeded noise block; forward batches are whole blocks (or parts of one)
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # certify.precision -> autocast dtype


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """The base model's forward under ``torch.autocast`` at ``dtype`` (None: full precision, no autocast).

    The certified classifier is then the network as it runs at that precision: a fixed function of its
    input, so Cohen's theorem still applies. Noise is drawn and added in fp32 outside it."""
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


@torch.inference_mode()
def class_counts(model: nn.Module, noise: Noise, x: torch.Tensor, n: int, num_classes: int,
                 batch: int, seed: int, key: tuple[int, ...], temperature: float | None = None,
                 pushforward: LinearPushforward | None = None, start: int = 0,
                 channels_last: bool = False, squares: bool = False,
                 precision: torch.dtype | None = None) -> torch.Tensor:
    """Sum over n draws eps_i of the base classifier's output at x + eps_i, one entry per class.

    Hard smoothing (``temperature=None``): class counts of argmax f(x + eps_i), int64.
    Soft smoothing: sums of softmax(f(x + eps_i) / temperature), float64; divide by n for the mean.
    With ``squares`` (soft only) the result has two rows: the sums and the sums of squared scores
    (for variance-adaptive bounds such as empirical Bernstein).

    Noise for samples [j*BLOCK, (j+1)*BLOCK) comes from a generator seeded by (seed, *key, j), so the
    result is the same for any ``batch``. Noisy inputs are written in place into one preallocated
    buffer of ``batch`` rounded down to whole blocks (at least one block); forward passes take at most
    ``batch`` rows, normalised in that buffer where the model allows (``forward_inplace``). Counts
    accumulate on the tensor side; memory is flat in n. With ``pushforward`` (a linear first layer,
    scaled-Gaussian noise), the first layer's output is drawn directly: the same distribution from fewer
    random numbers.

    ``start`` (a multiple of BLOCK) skips the first draws of the stream: counts over draws
    [start, start + n) are the increment a sequential test adds to counts over [0, start).
    ``channels_last``: feed image batches to the model in channels-last memory order (the noise itself
    is drawn in the default order, so the samples are the same). ``precision``: run the model under
    autocast at that dtype (see :func:`autocast`).
    """
    if start % BLOCK:
        raise ValueError(f"start={start} must be a multiple of {BLOCK}")
    if squares and temperature is None:
        raise ValueError("squares=True needs soft smoothing (a temperature)")
    dtype = torch.long if temperature is None else torch.float64
    total = torch.zeros((2, num_classes) if squares else num_classes, dtype=dtype, device=x.device)
    per_forward = max(1, batch // BLOCK) * BLOCK
    first = start // BLOCK
    n_blocks = -(-n // BLOCK)
    use_pf = pushforward is not None and isinstance(noise, ScaledGaussian)
    if use_pf:
        h0 = pushforward.clean_preactivation(x)
        buf = torch.empty((min(per_forward, n), pushforward.hidden), device=x.device, dtype=x.dtype)
        scales = torch.empty(len(buf), device=x.device, dtype=x.dtype)
    else:
        # With one channel, channels-last order is the default order: allocate it so, and skip the copy.
        fmt = torch.channels_last if channels_last and x.dim() == 3 and x.shape[0] == 1 else torch.contiguous_format
        buf = torch.empty((min(per_forward, n), *x.shape), device=x.device, dtype=x.dtype, memory_format=fmt)
    forward = getattr(model, "forward_inplace", model)  # the buffer is refilled before its next use
    seeds = block_seeds(seed, key, range(first, first + n_blocks)).tolist()  # all at once: cheap
    g = torch.Generator(device=x.device)  # reseeded per block: a fresh generator's stream, no allocation
    j = 0
    while j < n_blocks:
        m = 0
        while j < n_blocks and m + min(BLOCK, n - j * BLOCK) <= len(buf):
            size = min(BLOCK, n - j * BLOCK)
            g.manual_seed(seeds[j])
            if use_pf:
                scales[m:m + size] = noise.scales(size, g, x.device, x.dtype)
                buf[m:m + size].normal_(generator=g)
            else:
                noise.fill(buf[m:m + size], x, g)
            m += size
            j += 1
        for lo in range(0, m, batch):
            hi = min(m, lo + batch)
            with autocast(x.device, precision):
                if use_pf:
                    logits = pushforward.logits(h0, scales[lo:hi], buf[lo:hi])
                elif channels_last and fmt is not torch.channels_last:
                    logits = forward(buf[lo:hi].contiguous(memory_format=torch.channels_last))
                else:
                    logits = forward(buf[lo:hi])
            check_finite_logits(logits, "under noise")
            if temperature is None:
                total += torch.bincount(logits.argmax(dim=1), minlength=num_classes)
            else:
                probs = torch.softmax(logits.double() / temperature, dim=1)
                if squares:
                    total[0] += probs.sum(dim=0)
                    total[1] += probs.square().sum(dim=0)
                else:
                    total += probs.sum(dim=0)
    return total.cpu()


def check_finite_logits(logits: torch.Tensor, where: str) -> None:
    """Refuse NaN/inf outputs: argmax over NaN is class 0, and a radius must never rest on NaN arithmetic."""
    if not bool(torch.isfinite(logits).all()):
        raise RsbenchError(f"the base model emits non-finite logits (NaN or inf) {where}; its weights or inputs are "
                           "broken, so no certificate can rest on its outputs")


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
    pushforward: LinearPushforward | None = None
    channels_last: bool = False
    precision: torch.dtype | None = None

    def __post_init__(self) -> None:
        with torch.inference_mode(), autocast(self.x.device, self.precision):
            check_finite_logits(self.model(self.x.unsqueeze(0)), f"on the clean test point {self.idx}")

    def counts(self, num: int, phase: int, noise: Noise | None = None, stream: tuple[int, ...] = (),
               temperature: float | None = None, start: int = 0, squares: bool = False) -> torch.Tensor:
        return class_counts(self.model, noise or self.noise, self.x, num, self.num_classes, self.batch,
                            self.seed, (self.idx, phase, *stream), temperature, self.pushforward, start,
                            self.channels_last, squares, self.precision)

    def hard(self, num: int, phase: int) -> torch.Tensor:
        """Class counts under the method's own noise (the CountsFn of Cohen's algorithms)."""
        return self.counts(num, phase)
