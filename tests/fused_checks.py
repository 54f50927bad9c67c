"""Checks of the fused Gaussian noise kernel, shared by the CPU test (Triton's interpreter, in a subprocess
with TRITON_INTERPRET=1) and the CUDA test (the compiled kernel on a GPU)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats

from rsbench.certify import fused_noise, sampling
from rsbench.noise.gaussian import GaussianNoise
from rsbench.noise.mixture import GaussianMixtureNoise


def check_draws(device: torch.device) -> None:
    """N(0, 1) draws (KS test, moments, no correlation between neighbours), each block a function of its key,
    its row's place and its point's centre alone."""
    centres = torch.rand(2, 3, 6, 7, device=device)
    out = torch.empty(250, 3, 6, 7, device=device)
    keys = fused_noise.stream_keys(np.array([11, 12, 13], np.uint64), device)
    layout = fused_noise.blocks_layout([100, 100, 50], [0, 1, 1], device)
    scales = torch.full((250,), 0.5, device=device)
    fused_noise.fill_gaussian_blocks(out, centres, scales, keys, layout, 100)
    rows = torch.cat([(out[:100] - centres[0]), (out[100:] - centres[1])]).double().div(0.5).flatten(1).cpu().numpy()
    z = rows.flatten()
    assert stats.kstest(z, "norm").pvalue > 1e-3, stats.kstest(z, "norm")
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs(stats.pearsonr(z[:-1], z[1:])[0]) < 0.01
    corr = np.corrcoef(rows)  # rows against rows: independent
    off = np.abs(corr[~np.eye(len(corr), dtype=bool)])
    assert off.mean() < 0.1 and off.max() < 0.6, (off.mean(), off.max())
    alone = torch.empty(50, 3, 6, 7, device=device)  # the last block by itself, at another place in the buffer
    fused_noise.fill_gaussian_blocks(alone, centres[1:], scales[:50], keys[2:], fused_noise.blocks_layout([50], [0],
                                                                                                    device), 100)
    assert torch.equal(alone, out[200:])
    other = torch.empty_like(alone)
    fused_noise.fill_gaussian_blocks(other, centres[1:], scales[:50], keys[:1], fused_noise.blocks_layout([50], [0],
                                                                                                    device), 100)
    assert not torch.equal(other, alone)  # another key, other numbers


def check_counts(device: torch.device, n: int = 250, points: int = 3, batches: tuple[int, ...] = (100, 300, 2000),
                 soft: bool = True) -> None:
    """Counts through the fused path: the same for any forward batch, and k points at once give each point's
    own counts (hard and, with ``soft``, soft; plain Gaussian and a mixture; partial blocks in the middle of the
    stream). Single points run at batch 300 (a point's blocks in one fill), so ``batches=(100,)`` alone already
    compares two groupings of the blocks into fills."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(20, 3)).to(device)
    xs = [torch.rand(1, 4, 5, device=device) for _ in range(points)]
    cases = ((GaussianNoise(0.5), None), (GaussianNoise(0.5), 0.5),
             (GaussianMixtureNoise((0.25, 1.0), (0.5, 0.5)), None))
    for noise, temp in (c for c in cases if soft or c[1] is None):
        single = [sampling.class_counts(model, noise, x, n, 3, 300, 7, (i, 2), temp) for i, x in enumerate(xs)]
        for batch in batches:
            many = sampling.class_counts_many(model, noise, xs, [(i, 2) for i in range(points)], n, 3, batch, 7, temp)
            for a, b in zip(single, many, strict=True):
                assert torch.equal(a, b) if temp is None else torch.allclose(a, b, rtol=1e-12, atol=0)
        assert int(single[0].sum()) == n if temp is None else abs(float(single[0].sum()) - n) < 1e-9


def check_halfspace(device: torch.device, n: int) -> None:
    """The estimator against closed-form truth: for f(x) = [w.x > 0] with |w| = 1 and x at distance t from the
    boundary, P(f(x + eps) = 1) = Phi(t / sigma) under N(0, sigma^2 I), and sum_k w_k Phi(t / sigma_k) under a
    mixture; counts through the fused path lie within 4.5 binomial standard deviations."""
    w = torch.tensor([0.6, -0.8, 0.0, 0.0, 0.0, 0.0], device=device)
    halfspace = torch.nn.Sequential(torch.nn.Linear(6, 2, bias=False)).to(device)
    with torch.no_grad():
        halfspace[0].weight.copy_(torch.stack([-w, w]) * 0.5)  # logit_1 - logit_0 = w.x
    t = 0.25
    x = torch.tensor([0.2, 0.3, 0.1, 0.4, 0.5, 0.6], device=device)
    x = x - (w @ x - t) * w  # w.x = t
    cases = ((GaussianNoise(0.5), stats.norm.cdf(t / 0.5)),
             (GaussianMixtureNoise((0.25, 1.0), (0.3, 0.7)), 0.3 * stats.norm.cdf(t / 0.25) + 0.7 * stats.norm.cdf(t)))
    for noise, p in cases:
        count = int(sampling.class_counts(halfspace, noise, x, n, 2, 1000, 3, (0, 1))[1])
        assert abs(count - n * p) <= 4.5 * np.sqrt(n * p * (1 - p)), (type(noise).__name__, count / n, p)


if __name__ == "__main__":  # the CPU test runs this under TRITON_INTERPRET=1
    fused_noise.available = lambda buf: buf.dtype == torch.float32 and fused_noise._rows_dense(buf)
    check_draws(torch.device("cpu"))
    # the interpreter runs each of the kernel's programs (one per block row) in Python, ~15 ms each here: the
    # sizes are cut to what still covers every path (soft scores use the same noise fill as hard counts)
    check_counts(torch.device("cpu"), n=150, points=2, batches=(100,), soft=False)
    check_halfspace(torch.device("cpu"), n=500)
    print("fused noise checks passed")
