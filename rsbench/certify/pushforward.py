"""Sampling a linear first layer's output directly: W(x + eps) = Wx + W eps, W eps ~ N(0, s^2 W W^T).

For a base model whose first layer after normalisation is linear (MLPs), the pre-activation of that
layer under input noise eps = s z (z ~ N(0, I_d), s a per-draw scale) is h0 + s C u with
h0 = W (x - m) / std + b, C the Cholesky factor of A A^T, A = W diag(1/std) and u ~ N(0, I_h).
That is exactly the same distribution as pushing x + eps through the layer, with h-dimensional
instead of d-dimensional draws and no first matmul over the noise, so every certificate is unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from rsbench.models.registry import NormalizedModel


class LinearPushforward:
    """The noisy forward pass of a NormalizedModel(Sequential(Flatten, Linear, ...)) from h-dim draws."""

    def __init__(self, model: NormalizedModel) -> None:
        flatten, first = model.net[0], model.net[1]
        d = first.in_features
        per_channel = d // model.std.numel()  # channel-major flattening: each channel's value repeats H*W times
        std_vec = model.std.flatten().repeat_interleave(per_channel)
        mean_vec = model.mean.flatten().repeat_interleave(per_channel)
        with torch.no_grad():
            a = first.weight.double() / std_vec.double()          # A = W diag(1/std), (h, d)
            cov = a @ a.T
            chol, info = torch.linalg.cholesky_ex(cov)
            if int(info) != 0:  # rank-deficient (h > d or dependent rows): a symmetric square root instead
                evals, evecs = torch.linalg.eigh(cov)
                chol = evecs * evals.clamp_min(0).sqrt()
        self.factor_t = chol.T.to(first.weight.dtype).contiguous()  # u @ C^T has covariance C C^T = A A^T
        self.first, self.rest, self.flatten = first, model.net[2:], flatten
        self.mean_vec, self.std_vec = mean_vec.to(first.weight.dtype), std_vec.to(first.weight.dtype)
        self.hidden = first.out_features

    @staticmethod
    def applies(model: nn.Module) -> bool:
        """True when the model is NormalizedModel(Sequential(Flatten, Linear, ...)) with a wide enough input."""
        net = getattr(model, "net", None)
        return (isinstance(model, NormalizedModel) and isinstance(net, nn.Sequential) and len(net) >= 2
                and isinstance(net[0], nn.Flatten) and isinstance(net[1], nn.Linear)
                and net[1].out_features < net[1].in_features)

    def clean_preactivation(self, x: torch.Tensor) -> torch.Tensor:
        """h0 = W (x - m) / std + b for one input x."""
        return self.first(((x.flatten() - self.mean_vec) / self.std_vec).unsqueeze(0))[0]

    def preactivation(self, h0: torch.Tensor, scales: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """The first layer's outputs h0 + s_i C u_i for draws u_i ~ N(0, I_h)."""
        return torch.addcmul(h0.unsqueeze(0), scales.unsqueeze(1), u @ self.factor_t)

    def logits(self, h0: torch.Tensor, scales: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Base-model logits for the pre-activations h0 + s_i C u_i of draws u_i ~ N(0, I_h)."""
        return self.rest(self.preactivation(h0, scales, u))
