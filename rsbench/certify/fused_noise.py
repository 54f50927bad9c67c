"""Seeded Gaussian noise for many blocks in one GPU kernel (Triton), for scaled-Gaussian noise on CUDA.

The sampler seeds every 100-draw block from (seed, point, phase, block) so that a row never depends on
batching. With torch's generator that is one reseed and one small kernel per block: for n = 100,000, a
thousand launches that leave the GPU idle between forward passes. Here one kernel fills a whole forward
batch: row r of block j is

    out[r] = x + s_r * z_r,    z_r[2q], z_r[2q + 1] = Box-Muller(u1, u2),   (u1, u2) from Philox4x32-10
                                                    keyed by block j's key at counter i * ceil(d / 2) + q

(i: r's row within its block), so every value is still a function of its block's seed and its place in the
block alone, for one test point or several (each block names its point's x). Each uniform
takes 53 bits from two Philox words and Box-Muller runs in float64 (u1 in (0, 1], so radii reach 8.6
sigma): the draws are N(0, 1) to double-precision resolution, closer than torch's own CUDA normal_ (32-bit
uniforms, which truncate the tails at 6.7 sigma). x + s z is formed in float64 and rounded once to the
buffer's dtype. The numbers differ from torch's generator (on CUDA they already differ from the CPU's),
so CUDA rows change once, and are reproducible and batch-invariant as before.
"""

from __future__ import annotations

import numpy as np
import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # the CPU-only path never needs it
    triton = None

PAIR_CHUNK = 512  # at most this many value pairs per Triton program (1,024 values of one row)
# Philox keys are the block seeds XOR this constant: torch's generator, seeded with the block seed itself,
# draws a mixture's component choices, and the two streams must not share a key (and so their numbers).
KEY_SALT = 0x2545F4914F6CDD1D


def stream_keys(seeds: np.ndarray, device: torch.device) -> torch.Tensor:
    """The Philox key of each block (int64, on ``device``): its 63-bit seed (uint64 array) XOR :data:`KEY_SALT`."""
    return torch.from_numpy((seeds ^ np.uint64(KEY_SALT)).astype(np.int64)).to(device, non_blocking=True)


def blocks_layout(sizes: list[int], points: list[int], device: torch.device) -> torch.Tensor:
    """The kernel's block table: one row (first row in the buffer, rows, point) per block, blocks back to back."""
    first = np.concatenate([[0], np.cumsum(sizes[:-1])]) if sizes else np.zeros(0)
    return torch.from_numpy(np.stack([first, sizes, points], axis=1).astype(np.int32)).to(device, non_blocking=True)


def available(buf: torch.Tensor) -> bool:
    """Whether ``buf`` can be filled by the fused kernel: a CUDA float32 buffer whose rows are dense in the
    logical (row-major) order, with Triton installed."""
    return (triton is not None and buf.is_cuda and buf.dtype == torch.float32 and buf.dim() >= 1
            and _rows_dense(buf))


def _rows_dense(buf: torch.Tensor) -> bool:
    # one channel in channels-last order has the row-major strides too
    return buf.is_contiguous() or (buf.dim() == 4 and buf.shape[1] == 1 and buf.stride(0) == buf[0].numel()
                                   and buf.stride(2) == buf.shape[3] and buf.stride(3) == 1)


def fill_gaussian_blocks(out: torch.Tensor, centres: torch.Tensor, scales: torch.Tensor, keys: torch.Tensor,
                         layout: torch.Tensor, rows_per_block: int) -> torch.Tensor:
    """For each block i with ``layout[i] = (first, rows, point)`` (int32, on the device) and each r < rows:
    out[first + r] <- centres[point] + scales[first + r] * z, z keyed by ``keys[i]`` at the counters
    r * ceil(d / 2) + q (see the module docstring); ``rows <= rows_per_block``. Returns ``out``."""
    d = out[0].numel() if len(out) else 0
    if len(keys) == 0:
        return out
    if len(layout) != len(keys) or layout.shape[1:] != (3,) or centres[0].numel() != d:
        raise ValueError(f"fill_gaussian_blocks: {len(keys)} keys need a ({len(keys)}, 3) layout and centres of "
                         f"{d} values; got {tuple(layout.shape)} and {tuple(centres.shape)}")
    if not (_rows_dense(out) and centres.is_contiguous() and scales.is_contiguous() and keys.is_contiguous()
            and layout.is_contiguous()):
        raise ValueError("fill_gaussian_blocks needs dense rows and contiguous centres, scales, keys and layout")
    pairs = (d + 1) // 2
    chunk = min(PAIR_CHUNK, triton.next_power_of_2(pairs))
    grid = (len(keys), rows_per_block, triton.cdiv(pairs, chunk))
    _gaussian_blocks_kernel[grid](out, centres, scales, keys, layout, d, pairs, PAIR_CHUNK=chunk)
    return out


if triton is not None:
    @triton.jit
    def _uniform53(a, b):
        """A uniform in (0, 1] from two 32-bit words: (53-bit integer + 1) / 2^53."""
        v = (a.to(tl.uint64) << 21) | (b.to(tl.uint64) >> 11)
        return (v.to(tl.float64) + 1.0) * 1.1102230246251565e-16  # 2^-53

    @triton.jit
    def _gaussian_blocks_kernel(out_ptr, centre_ptr, scale_ptr, key_ptr, layout_ptr, d, pairs,
                                PAIR_CHUNK: tl.constexpr):
        blk = tl.program_id(0)
        r = tl.program_id(1)  # row within the block
        rows = tl.load(layout_ptr + blk * 3 + 1)
        if r < rows:
            row = (tl.load(layout_ptr + blk * 3) + r).to(tl.int64)
            point = tl.load(layout_ptr + blk * 3 + 2).to(tl.int64)
            q = tl.program_id(2) * PAIR_CHUNK + tl.arange(0, PAIR_CHUNK)  # pair index within the row
            seed = tl.load(key_ptr + blk)
            counter = (r * pairs + q).to(tl.uint32)
            w0, w1, w2, w3 = tl.randint4x(seed, counter)
            radius = tl.sqrt(-2.0 * tl.log(_uniform53(w0, w1)))
            theta = 6.283185307179586 * (1.0 - _uniform53(w2, w3))  # in [0, 2 pi)
            s = tl.load(scale_ptr + row).to(tl.float64)
            even, odd = 2 * q, 2 * q + 1
            x0 = tl.load(centre_ptr + point * d + even, mask=even < d, other=0.0).to(tl.float64)
            x1 = tl.load(centre_ptr + point * d + odd, mask=odd < d, other=0.0).to(tl.float64)
            tl.store(out_ptr + row * d + even, (x0 + s * radius * tl.cos(theta)).to(out_ptr.dtype.element_ty),
                     mask=even < d)
            tl.store(out_ptr + row * d + odd, (x1 + s * radius * tl.sin(theta)).to(out_ptr.dtype.element_ty),
                     mask=odd < d)
