"""Closed-form truth for certificate tests: a linear (halfspace) base classifier.

f(x) = 1 if <w, x> + b > 0 else 0. Under x + eps with eps ~ N(0, sigma^2 I), the probability of
class 1 is exactly Phi((<w, x> + b) / (sigma ||w||)), and the true l2 robust radius of the
smoothed classifier at x is the distance |<w, x> + b| / ||w|| to the hyperplane.
"""

from __future__ import annotations

import torch
from scipy.stats import norm
from torch import nn


class Halfspace(nn.Module):
    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w = w.flatten()
        self.b = float(b)

    def margin(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w + self.b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.margin(x)
        return torch.stack([torch.zeros_like(m), m], dim=1)

    def distance(self, x: torch.Tensor) -> float:
        return abs(float(self.margin(x.unsqueeze(0))[0])) / float(self.w.norm())

    def gaussian_p1(self, x: torch.Tensor, sigma: float) -> float:
        return float(norm.cdf(float(self.margin(x.unsqueeze(0))[0]) / (sigma * float(self.w.norm()))))


class OneHotHalfspace(Halfspace):
    """A halfspace whose softmax is (numerically) one-hot, so soft smoothing sees exactly the hard votes and
    the smoothed score of class 1 is Phi(margin / (sigma ||w||))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1e6 * torch.sign(super().forward(x))


def point_at_distance(model: Halfspace, shape: tuple[int, ...], distance: float, seed: int = 0) -> torch.Tensor:
    """A point on the class-1 side at the given l2 distance from the hyperplane."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g).flatten()
    w = model.w
    x = x - (x @ w + model.b) / (w @ w) * w + distance * w / w.norm()
    return x.view(shape)


def certify_at_distances(method, model: Halfspace, shape: tuple[int, ...], distances, n: int, batch: int,
                         seed: int = 0, n0: int = 100, alpha: float = 0.001):
    """Yield (distance, x, row): ``method.certify`` at the k-th point at each l2 distance from the boundary."""
    from rsbench.certify.sampling import PointSampler

    for k, distance in enumerate(distances):
        x = point_at_distance(model, shape, distance, seed=k)
        sampler = PointSampler(model, method.noise, x, k, 2, batch, seed=seed)
        yield distance, x, method.certify(sampler, n0=n0, n=n, alpha=alpha)
