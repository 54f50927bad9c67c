"""The IDRS standard-deviation network sigma_theta (input_dependent_rs_lipschitz_sigma.md, Sec. 4, Remark 2).

    sigma_theta(x) = ReLU(W2 ReLU(W1 x + b1) + b2) + sigma_min,
    W_j = V_j * min(1, c_j / ||V_j||_2)  (spectral normalisation by the exact largest singular value),

with c_1 = 1 and c_2 = Lip: ReLU is 1-Lipschitz, so Lip(sigma_theta) <= ||W1|| ||W2|| <= Lip holds for
every parameter value, and sigma_theta >= sigma_min. It reads raw [0, 1] pixels (no normalisation layer),
so the bound is in the same l2 geometry as the certificate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rsbench.errors import RsbenchError, check_count, check_positive, require

SAFETY = 1.0 - 1e-5  # keep each layer's norm strictly below its cap despite float rounding


class SigmaNet(nn.Module):
    def __init__(self, d: int, hidden: int = 200, sigma_min: float = 0.65, lip: float = 0.5,
                 init_bias: float = 0.1) -> None:
        super().__init__()
        self.d, self.hidden = check_count("d", d), check_count("hidden", hidden)
        self.sigma_min = check_positive("sigma_min", sigma_min)
        require(lip >= 0 and math.isfinite(lip), f"lip_sigma={lip} must be a finite number >= 0")
        self.lip = float(lip)  # 0: W2 = 0, a constant sigma (standard RS)
        self.v1 = nn.Parameter(torch.randn(hidden, d) / math.sqrt(d))
        self.b1 = nn.Parameter(torch.zeros(hidden))
        self.v2 = nn.Parameter(torch.randn(1, hidden) / math.sqrt(hidden))
        self.b2 = nn.Parameter(torch.full((1,), float(init_bias)))  # > 0: the output ReLU starts active

    def caps(self) -> tuple[float, float]:
        return 1.0, self.lip

    def normalized(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The effective weights W_j = V_j min(1, c_j / ||V_j||) and their norms ||W_j|| = min(||V_j||, c_j),
        from one SVD per layer."""
        weights, norms = [], []
        for v, cap in zip((self.v1, self.v2), self.caps(), strict=True):
            norm = torch.linalg.matrix_norm(v, ord=2).clamp_min(1e-30)
            scale = torch.clamp(cap * SAFETY / norm, max=1.0)
            weights.append(v * scale)
            norms.append(norm * scale)
        return weights, norms

    def weights(self) -> list[torch.Tensor]:
        """The effective (spectrally normalised) weight matrices W1, W2."""
        return self.normalized()[0]

    def forward(self, x: torch.Tensor, weights: list[torch.Tensor] | None = None) -> torch.Tensor:
        """sigma_theta(x) for a batch of inputs (any shape (B, ...) with prod(...) = d); returns shape (B,)."""
        w1, w2 = self.weights() if weights is None else weights
        h = torch.relu(x.flatten(1) @ w1.T + self.b1)
        return torch.relu(h @ w2.T + self.b2).squeeze(1) + self.sigma_min

    def frozen(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """sigma_theta with the normalised weights computed once (no SVD per call): for certification."""
        weights = [w.detach() for w in self.weights()]
        return lambda x: self.forward(x, weights)


def spectral_bound(net: SigmaNet) -> float:
    """Lip(sigma_theta) <= prod_j ||W_j||_2, each norm from an exact SVD in float64."""
    with torch.no_grad():
        return float(math.prod(float(torch.linalg.matrix_norm(w.double(), ord=2)) for w in net.weights()))


def power_iteration_norm(w: torch.Tensor, iters: int = 200, seed: int = 0) -> float:
    """||W||_2 by power iteration on W^T W (an independent check of the SVD; converges from below)."""
    g = torch.Generator().manual_seed(seed)
    w = w.detach().double().cpu()
    v = torch.randn(w.shape[1], generator=g, dtype=torch.float64)
    for _ in range(iters):
        v = w.T @ (w @ v)
        v = v / v.norm().clamp_min(1e-300)
    return float((w @ v).norm())


def verify_lipschitz(net: SigmaNet, tol: float = 1e-6) -> float:
    """The product of layer norms, after checking it (and its power-iteration estimate) is <= net.lip."""
    exact = spectral_bound(net)
    iterated = math.prod(power_iteration_norm(w) for w in net.weights())
    if max(exact, iterated) > net.lip * (1.0 + tol):
        raise RsbenchError(f"sigma network violates its Lipschitz bound: prod ||W_j|| = {exact:.6g} "
                           f"(power iteration {iterated:.6g}) > Lip(sigma) = {net.lip:g}")
    return exact


@dataclass(frozen=True)
class SigmaTrainConfig:
    """How a sigma network is trained (``method.train``): part of what names it in the cache."""

    epochs: int = 1
    batch_size: int = 128
    samples: int = 16          # Monte Carlo draws per training image and step
    lr: float = 1e-3           # Adam
    spectral_reg: float = 0.01  # lambda (paper: 0.01)
    max_examples: int | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> SigmaTrainConfig:
        d = dict(d or {})
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        require(not unknown, f"method.train: unknown keys {unknown}; valid: {sorted(cls.__dataclass_fields__)}")
        tc = cls(**d)
        check_count("method.train.epochs", tc.epochs)
        check_count("method.train.batch_size", tc.batch_size)
        check_count("method.train.samples", tc.samples)
        check_positive("method.train.lr", tc.lr)
        require(tc.spectral_reg >= 0, f"method.train.spectral_reg={tc.spectral_reg} must be >= 0")
        return tc
