"""Monte Carlo over the base classifier under noise, streamed in fixed-size seeded blocks."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rsbench.certify import fused_noise
from rsbench.certify.pushforward import LinearPushforward
from rsbench.certify.seeding import block_seeds_many
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
    Soft smoothing: sums of softmax(f(x + eps_i) / temperature), float64; divide by n for the mean. Each
    seeded block's scores are summed alone and the block sums added in block order, so the float64 total is
    the same bit for bit for any ``batch`` and any other points sharing the forward batches.
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

    Nothing here waits for the device between forward passes (counts are added with ``index_add_``, not
    ``bincount``, which reads its input's maximum back; the finiteness check is one flag read at the end),
    so on a GPU the next batch's noise is queued while the current forward pass runs. On CUDA, scaled-Gaussian
    noise for a whole forward batch is one kernel (:mod:`rsbench.certify.fused_noise`), still seeded per block.
    """
    return class_counts_many(model, noise, [x], [key], n, num_classes, batch, seed, temperature, pushforward,
                             start, channels_last, squares, precision)[0]


@torch.inference_mode()
def class_counts_many(model: nn.Module, noise: Noise, xs: list[torch.Tensor], keys: list[tuple[int, ...]], n: int,
                      num_classes: int, batch: int, seed: int, temperature: float | None = None,
                      pushforward: LinearPushforward | None = None, start: int = 0, channels_last: bool = False,
                      squares: bool = False, precision: torch.dtype | None = None) -> list[torch.Tensor]:
    """:func:`class_counts` for several points at once (``certify.points_per_batch``): point p's draws are
    seeded by (seed, *keys[p], block) as if it were alone, and the points' blocks follow each other in one
    stream of forward batches, so each result is the single point's whenever a row's output does not
    depend on the other rows of its batch."""
    if start % BLOCK:
        raise ValueError(f"start={start} must be a multiple of {BLOCK}")
    if squares and temperature is None:
        raise ValueError("squares=True needs soft smoothing (a temperature)")
    x, k, device = xs[0], len(xs), xs[0].device
    dtype = torch.long if temperature is None else torch.float64
    total = torch.zeros((k, 2, num_classes) if squares else (k, num_classes), dtype=dtype, device=device)
    per_forward = max(1, batch // BLOCK) * BLOCK
    first = start // BLOCK
    n_blocks = -(-n // BLOCK)
    sizes = [min(BLOCK, n - j * BLOCK) for j in range(n_blocks)]  # the same for every point
    block_keys = block_seeds_many(seed, keys, range(first, first + n_blocks)).reshape(-1)  # point-major
    use_pf = pushforward is not None and isinstance(noise, ScaledGaussian)
    if use_pf:
        h0 = [pushforward.clean_preactivation(xp) for xp in xs]
        buf = torch.empty((min(per_forward, k * n), pushforward.hidden), device=device, dtype=x.dtype)
    else:
        # With one channel, channels-last order is the default order: allocate it so, and skip the copy.
        fmt = torch.channels_last if channels_last and x.dim() == 3 and x.shape[0] == 1 else torch.contiguous_format
        buf = torch.empty((min(per_forward, k * n), *x.shape), device=device, dtype=x.dtype, memory_format=fmt)
    scales = torch.empty(len(buf), device=device, dtype=x.dtype) if isinstance(noise, ScaledGaussian) else None
    forward = getattr(model, "forward_inplace", model)  # the buffer is refilled before its next use
    g = torch.Generator(device=device)  # reseeded per block: a fresh generator's stream, no allocation
    finite = torch.ones((), dtype=torch.bool, device=device)
    ones = torch.ones(len(buf), dtype=torch.long, device=device) if temperature is None else None
    fused = scales is not None and fused_noise.available(buf)
    seeds = block_keys.tolist() if not fused or noise.draws_scales else None  # per-block generator seeds
    if fused:  # one kernel per forward batch: z (pushforward) or x + s z, each block from its own key
        keys_dev = fused_noise.stream_keys(block_keys, device)
        if not noise.draws_scales:
            scales.copy_(noise.scales(len(buf), g, device, x.dtype))  # constant: drawn once, no generator
        centres = torch.zeros((1, pushforward.hidden), device=device, dtype=x.dtype) if use_pf else torch.stack(xs)
        row_scales = torch.ones_like(scales) if use_pf else scales
    block_sums: list[list[torch.Tensor]] = [[] for _ in range(k)]  # soft: per point, its blocks' sums in order
    b, total_blocks = 0, k * n_blocks  # block b is point b // n_blocks's block b % n_blocks
    while b < total_blocks:
        m, b0, segments = 0, b, []  # segments: (point, first row, end row) in buf
        while b < total_blocks and m + sizes[b % n_blocks] <= len(buf):
            point, size = b // n_blocks, sizes[b % n_blocks]
            if segments and segments[-1][0] == point:
                segments[-1][2] = m + size
            else:
                segments.append([point, m, m + size])
            if fused:
                if noise.draws_scales:
                    g.manual_seed(seeds[b])
                    scales[m:m + size] = noise.scales(size, g, device, x.dtype)
            elif use_pf:
                g.manual_seed(seeds[b])
                scales[m:m + size] = noise.scales(size, g, device, x.dtype)
                buf[m:m + size].normal_(generator=g)
            else:
                g.manual_seed(seeds[b])
                noise.fill(buf[m:m + size], xs[point], g)
            m += size
            b += 1
        if fused:
            blocks = [(b0 + i) % n_blocks for i in range(b - b0)]
            layout = fused_noise.blocks_layout([sizes[j] for j in blocks],
                                   [0 if use_pf else (b0 + i) // n_blocks for i in range(b - b0)], device)
            fused_noise.fill_gaussian_blocks(buf, centres, row_scales, keys_dev[b0:b], layout, BLOCK)
        point_of_row = None
        if k > 1 and temperature is None:
            point_of_row = torch.repeat_interleave(torch.tensor([p for p, _, _ in segments], device=device),
                                                   torch.tensor([e - a for _, a, e in segments], device=device))
        probs = []
        for lo in range(0, m, batch):
            hi = min(m, lo + batch)
            parts = [(p, max(a, lo), min(e, hi)) for p, a, e in segments if a < hi and e > lo]
            with autocast(device, precision):
                if use_pf:  # per point its own clean pre-activation, then the rest of the network on them all
                    pre = [pushforward.preactivation(h0[p], scales[a:e], buf[a:e]) for p, a, e in parts]
                    logits = pushforward.rest(pre[0] if len(pre) == 1 else torch.cat(pre))
                elif channels_last and fmt is not torch.channels_last:
                    logits = forward(buf[lo:hi].contiguous(memory_format=torch.channels_last))
                else:
                    logits = forward(buf[lo:hi])
            finite &= torch.isfinite(logits).all()
            if temperature is None:
                pred = logits.argmax(dim=1)
                if point_of_row is not None:  # one count over all points: class index offset by the point's
                    pred = pred + point_of_row[lo:hi] * num_classes
                total.view(-1).index_add_(0, pred, ones[:hi - lo])
            else:
                probs.append(torch.softmax(logits.double() / temperature, dim=1))
        if probs:  # soft: one float64 sum per seeded block, whatever the forward batches (see block_sums)
            probs = probs[0] if len(probs) == 1 else torch.cat(probs)
            for p, a, e in segments:
                rows = probs[a:e]
                block_sums[p].append(_per_block(torch.stack([rows, rows.square()], 1) if squares else rows))
    if temperature is not None:  # the blocks' sums added in one fixed order: the same total for any batch
        total = torch.stack([torch.cat(sums).sum(0) for sums in block_sums])
    if not bool(finite):
        raise_non_finite("under noise")
    return list(total.cpu())


def _per_block(rows: torch.Tensor) -> torch.Tensor:
    """The sums of consecutive BLOCK rows of ``rows`` (a point's whole blocks; its last may be shorter), one each."""
    full = len(rows) // BLOCK * BLOCK
    sums = [rows[:full].unflatten(0, (-1, BLOCK)).sum(1)] if full else []
    if full < len(rows):
        sums.append(rows[full:].sum(0, keepdim=True))
    return torch.cat(sums)


def check_finite_logits(logits: torch.Tensor, where: str) -> None:
    """Refuse NaN/inf outputs: argmax over NaN is class 0, and a radius must never rest on NaN arithmetic."""
    if not bool(torch.isfinite(logits).all()):
        raise_non_finite(where)


def raise_non_finite(where: str) -> None:
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
    pool: Any = None  # a ForwardPool: the counts of concurrent samplers run as one class_counts_many
    base: nn.Module | None = None  # with a pool: the plain model those run (``model`` pools single calls)
    # shared draws: counts already drawn for this point by another method over the same model, data and sampling
    # settings (e.g. two certificates of one noise), keyed by everything that seeds and shapes a call
    memo: dict | None = None

    def __post_init__(self) -> None:
        with torch.inference_mode(), autocast(self.x.device, self.precision):
            check_finite_logits(self.model(self.x.unsqueeze(0)), f"on the clean test point {self.idx}")

    def counts(self, num: int, phase: int, noise: Noise | None = None, stream: tuple[int, ...] = (),
               temperature: float | None = None, start: int = 0, squares: bool = False) -> torch.Tensor:
        noise = noise or self.noise
        if self.memo is not None:
            key = (self.seed, self.idx, num, phase, stream, noise, temperature, start, squares)
            try:
                hit = self.memo.get(key)
            except TypeError:  # a noise that cannot be hashed is never shared
                return self._draw(num, phase, noise, stream, temperature, start, squares)
            if hit is None:
                hit = self.memo[key] = self._draw(num, phase, noise, stream, temperature, start, squares)
            return hit.clone()
        return self._draw(num, phase, noise, stream, temperature, start, squares)

    def _draw(self, num: int, phase: int, noise: Noise, stream: tuple[int, ...], temperature: float | None,
              start: int, squares: bool) -> torch.Tensor:
        model = self.model if self.base is None else self.base

        def many(items: list[tuple[torch.Tensor, int]]) -> list[torch.Tensor]:
            return class_counts_many(model, noise, [x for x, _ in items], [(i, phase, *stream) for _, i in items],
                                     num, self.num_classes, self.batch, self.seed, temperature, self.pushforward,
                                     start, self.channels_last, squares, self.precision)

        if self.pool is None:
            return many([(self.x, self.idx)])[0]
        try:
            group = ("counts", num, phase, stream, noise, temperature, start, squares)
            hash(group)
        except TypeError:  # a noise that cannot be hashed pools only with itself
            group = ("counts", num, phase, stream, id(noise), temperature, start, squares)
        return self.pool.call(group, many, (self.x, self.idx))

    def hard(self, num: int, phase: int) -> torch.Tensor:
        """Class counts under the method's own noise (the CountsFn of Cohen's algorithms)."""
        return self.counts(num, phase)
