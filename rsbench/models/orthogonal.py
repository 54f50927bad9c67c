"""1-Lipschitz building blocks of Smoothed Robustness Analysis (smoothed_robustness_analysis.md, App. C).

- :func:`bjorck`: order-1 Björck orthogonalisation A <- A (3/2 I - 1/2 A^T A) (App. C.2.1).
- :class:`BjorckLinear`: a linear layer whose weight is the Björck-orthogonalised parameter (orthonormal rows
  when out <= in); the iteration count adapts: every ``adapt_every`` epochs it is lowered to the least count
  whose mean off-diagonal row dot product is <= ``tol`` (the paper starts at 30, tol 1e-7).
- :class:`BCOPConv2d`: block convolution orthogonal parameterisation (Li et al. 2019b; the paper's Algorithm 1)
  with circular padding, so the convolution is an orthogonal (norm-preserving when c_out = c_in) operator.
- :class:`InvertibleDownsampling`: 2 x 2 space-to-depth, a permutation of the pixels (an isometry) that
  replaces stride 2.
Each layer also maps input moments (mean, variance) to output moments for moment propagation (App. C.2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsbench.errors import RsbenchError, require
from rsbench.models.registry import MODELS


def bjorck(w: Tensor, iters: int, safe_scale: bool = True) -> Tensor:
    """Order-1 Björck iterations; returns the (approximately) orthonormal-row version of a wide or square ``w``.

    The start is divided by a power-iteration estimate of ||w||_2 (a constant for the gradient), so the
    singular values start at about 1 or below, well inside the iteration's convergence region (0, sqrt 3),
    and it converges to the orthogonal polar factor.
    """
    transpose = w.shape[0] > w.shape[1]
    a = w.T if transpose else w  # rows <= columns: orthonormalise the rows
    if safe_scale:
        a = a / _spectral_estimate(a)
    for _ in range(iters):
        a = 1.5 * a - 0.5 * (a @ a.T) @ a
    return a.T if transpose else a


@torch.no_grad()
def _spectral_estimate(a: Tensor, steps: int = 10) -> Tensor:
    """||a||_2 by power iteration on a^T a from a fixed start (an estimate from below, accurate to ~1e-3)."""
    v = torch.linspace(1.0, 2.0, a.shape[1], device=a.device, dtype=a.dtype)
    for _ in range(steps):
        v = a.T @ (a @ v)
        v = v / v.norm().clamp_min(1e-30)
    return (a @ v).norm().clamp_min(1e-12)


def offdiag_mean(w: Tensor) -> float:
    """Mean |<w_i, w_j>| over pairs of different rows (columns when tall): the paper's orthogonality criterion."""
    a = w if w.shape[0] <= w.shape[1] else w.T
    g = (a @ a.T).detach().abs()
    n = g.shape[0]
    return float((g.sum() - g.diagonal().sum()) / max(n * (n - 1), 1))


def _cached(module: nn.Module, key: tuple, compute) -> Tensor:
    """A detached result of ``compute()`` kept on ``module`` until ``key`` (parameter versions) changes."""
    if getattr(module, "_cache_key", None) != key:
        with torch.no_grad():
            module._cache = compute().detach()
        module._cache_key = key
    return module._cache


class BjorckLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, iters: int = 30, tol: float = 1e-7,
                 max_iters: int = 100, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight_param = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.orthogonal_(self.weight_param)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.iters, self.tol, self.max_iters = int(iters), float(tol), int(max_iters)

    def weight(self, iters: int | None = None) -> Tensor:
        if iters is None and not self.training:  # evaluation: orthogonalise once per parameter version
            key = (self.weight_param._version, self.iters)
            return _cached(self, key, lambda: bjorck(self.weight_param, self.iters))
        return bjorck(self.weight_param, self.iters if iters is None else iters)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight(), self.bias)

    def moments(self, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
        w = self.weight()
        return F.linear(mean, w, self.bias), F.linear(var, w * w)

    @torch.no_grad()
    def adapt_iters(self) -> int:
        """Lower (or raise) the iteration count to the least one meeting the tolerance (App. C.2.1)."""
        for q in range(1, self.max_iters + 1):
            if offdiag_mean(self.weight(q)) <= self.tol:
                self.iters = q
                return q
        self.iters = self.max_iters
        return q


class InvertibleDownsampling(nn.Module):
    """(C, H, W) -> (4C, H/2, W/2) by stacking each 2 x 2 patch into channels: a pixel permutation."""

    def forward(self, x: Tensor) -> Tensor:
        return F.pixel_unshuffle(x, 2)

    def moments(self, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
        return F.pixel_unshuffle(mean, 2), F.pixel_unshuffle(var, 2)


def _block_conv(a: list[list[Tensor]], b: list[list[Tensor]]) -> list[list[Tensor]]:
    """[A box B]_{i,j} = sum_{i',j'} A_{i',j'} B_{i-i',j-j'} for block matrices given as nested lists."""
    ma, na, mb, nb = len(a), len(a[0]), len(b), len(b[0])
    out: list[list[Tensor | None]] = [[None] * (na + nb - 1) for _ in range(ma + mb - 1)]
    for i in range(ma):
        for j in range(na):
            for p in range(mb):
                for q in range(nb):
                    term = a[i][j] @ b[p][q]
                    cur = out[i + p][j + q]
                    out[i + p][j + q] = term if cur is None else cur + term
    return out  # type: ignore[return-value]


class BCOPConv2d(nn.Module):
    """Orthogonal k x k convolution (Li et al. 2019b, Algorithm 1), circular padding, c_out <= c_in."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, iters: int = 30, tol: float = 1e-7,
                 max_iters: int = 100, bias: bool = True) -> None:
        super().__init__()
        if out_channels > in_channels:
            raise ValueError(f"BCOP needs out_channels <= in_channels (got {out_channels} > {in_channels}); "
                             "use invertible downsampling first")
        self.cin, self.cout, self.k = in_channels, out_channels, int(kernel_size)
        half = max(in_channels // 2, 1)
        self.h = nn.Parameter(torch.empty(out_channels, in_channels))
        self.m = nn.Parameter(torch.empty(max(self.k - 1, 0), in_channels, half))
        self.n = nn.Parameter(torch.empty(max(self.k - 1, 0), in_channels, half))
        for p in (self.h, *self.m, *self.n):
            nn.init.orthogonal_(p)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.iters, self.tol, self.max_iters = int(iters), float(tol), int(max_iters)

    def kernel(self, iters: int | None = None) -> Tensor:
        """The (c_out, c_in, k, k) kernel: H box [[PQ, P(I-Q)], [(I-P)Q, (I-P)(I-Q)]] for each of the k-1 steps."""
        if iters is None and not self.training:
            key = (self.h._version, self.m._version, self.n._version, self.iters)
            return _cached(self, key, lambda: self.kernel(self.iters))
        q_it = self.iters if iters is None else iters
        eye = torch.eye(self.cin, device=self.h.device, dtype=self.h.dtype)
        w = [[bjorck(self.h, q_it)]]
        for i in range(self.k - 1):
            mi, ni = bjorck(self.m[i], q_it), bjorck(self.n[i], q_it)
            p, q = mi @ mi.T, ni @ ni.T
            w = _block_conv(w, [[p @ q, p @ (eye - q)], [(eye - p) @ q, (eye - p) @ (eye - q)]])
        return torch.stack([torch.stack(row, dim=-1) for row in w], dim=-2)  # (c_out, c_in, k, k)

    def _pad(self, x: Tensor) -> Tensor:
        lo = (self.k - 1) // 2
        return F.pad(x, (lo, self.k - 1 - lo, lo, self.k - 1 - lo), mode="circular") if self.k > 1 else x

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(self._pad(x), self.kernel(), self.bias)

    def moments(self, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
        w = self.kernel()
        return F.conv2d(self._pad(mean), w, self.bias), F.conv2d(self._pad(var), w * w)

    @torch.no_grad()
    def adapt_iters(self) -> int:
        for q in range(1, self.max_iters + 1):
            mats = [bjorck(self.h, q), *(bjorck(m, q) for m in self.m), *(bjorck(n, q) for n in self.n)]
            if max(offdiag_mean(a) for a in mats) <= self.tol:
                self.iters = q
                return q
        self.iters = self.max_iters
        return self.max_iters

    @torch.no_grad()
    def operator_norm(self, size: tuple[int, int]) -> float:
        """Exact l2 operator norm of the circular convolution on (c_in, *size) inputs: the largest singular
        value over the 2D DFT frequencies of the kernel (Sedghi et al. 2019)."""
        w = self.kernel().double()
        hgt, wid = size
        flipped = torch.zeros(self.cout, self.cin, hgt, wid, dtype=torch.float64, device=w.device)
        flipped[..., :self.k, :self.k] = w
        spec = torch.fft.fft2(flipped)  # (c_out, c_in, H, W)
        mats = spec.permute(2, 3, 0, 1)  # per frequency a c_out x c_in matrix
        return float(torch.linalg.matrix_norm(mats, ord=2).max())


LIPSCHITZ_1_LAYERS = (nn.ReLU, nn.Flatten, InvertibleDownsampling)  # parameter-free and 1-Lipschitz


def lipschitz_upper_bound(net: nn.Module, input_shape: tuple[int, ...]) -> float:
    """Product of the exact operator norms of the layers of a Sequential network (ReLU, flatten and invertible
    downsampling are 1-Lipschitz). Any other layer is refused (TypeError): its constant is not computed here."""
    bound = 1.0
    param = next(net.parameters(), None)  # the probe input lives where the weights do (CPU or GPU)
    x = torch.zeros(1, *input_shape, device=None if param is None else param.device,
                    dtype=None if param is None else param.dtype)
    for m in (net if isinstance(net, nn.Sequential) else [net]):
        if isinstance(m, nn.Sequential):
            bound *= lipschitz_upper_bound(m, tuple(x.shape[1:]))
        elif isinstance(m, BjorckLinear):
            bound *= float(torch.linalg.matrix_norm(m.weight().detach().double(), ord=2))
        elif isinstance(m, nn.Linear):
            bound *= float(torch.linalg.matrix_norm(m.weight.detach().double(), ord=2))
        elif isinstance(m, BCOPConv2d):
            bound *= m.operator_norm(tuple(x.shape[-2:]))
        elif not isinstance(m, LIPSCHITZ_1_LAYERS):
            raise TypeError(f"no Lipschitz bound for layer {type(m).__name__}")
        with torch.no_grad():
            x = m(x)
    return bound


def check_pixel_space(model: nn.Module) -> None:
    """Refuse a NormalizedModel that rescales its input: the bound must hold for pixel-space perturbations."""

    require(hasattr(model, "std") and hasattr(model, "mean"),
            "margin certificates need one of rsbench's 1-Lipschitz networks (model=sra_mlp or sra_cnn), "
            f"not a {type(model).__name__}")
    require(float(model.std.min()) == 1.0 and float(model.std.max()) == 1.0 and float(model.mean.abs().max()) == 0.0,
            "margin certificates need a model without input normalisation (model=sra_mlp or sra_cnn)")


def relu_moments(mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and variance of ReLU(s) for s ~ N(mean, var) (App. A.5): with a = mean / sd,
    E = mean Phi(a) + sd phi(a), E[h^2] = (mean^2 + var) Phi(a) + mean sd phi(a)."""
    sd = var.clamp_min(1e-30).sqrt()
    a = mean / sd
    cdf = 0.5 * (1 + torch.erf(a / math.sqrt(2)))
    pdf = torch.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)
    m1 = mean * cdf + sd * pdf
    m2 = (mean * mean + var) * cdf + mean * sd * pdf
    return m1, (m2 - m1 * m1).clamp_min(0)


def propagate_moments(net: nn.Module, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
    """Output mean and (diagonal) variance of ``net`` for input mean ``mean`` and per-pixel variance ``var``
    under the independence approximation of App. C.2 (exact for the linear layers' means)."""
    for m in (net if isinstance(net, nn.Sequential) else [net]):
        if isinstance(m, nn.Sequential):
            mean, var = propagate_moments(m, mean, var)
        elif isinstance(m, nn.ReLU):
            mean, var = relu_moments(mean, var)
        elif isinstance(m, nn.Flatten):
            mean, var = m(mean), m(var)
        elif hasattr(m, "moments"):
            mean, var = m.moments(mean, var)
        else:
            raise TypeError(f"moment propagation does not support {type(m).__name__}")
    return mean, var


def _unnormalized(net: nn.Module) -> nn.Module:
    net.unnormalized = True  # build_model: no normalisation layer, so the Lipschitz bound holds in pixel space
    return net


def sra_mlp(spec, widths: Sequence[int] = (512, 512, 512), iters: int = 30, bias: bool = True) -> nn.Module:
    """App. C.1: MLP with three hidden layers of 512 units, Björck-orthogonal weights (``iters`` initial
    iterations, adapted in training), ReLU. ``bias=False`` gives the authors' bias-free layers (ThomRC/sra,
    exp_settings.py); the default keeps the biases the MNIST results in docs/REPRODUCTION.md were measured with."""
    layers: list[nn.Module] = [nn.Flatten()]
    d = spec.dim
    for w in widths:
        layers += [BjorckLinear(d, int(w), iters, bias=bias), nn.ReLU()]
        d = int(w)
    layers.append(BjorckLinear(d, spec.num_classes, iters, bias=bias))
    return _unnormalized(nn.Sequential(*layers))


DOWNSAMPLED_KERNELS = ("divide", "keep")


def conv_kernel(k: int, stride: int, rule: str) -> int:
    """The kernel a stride-``stride`` k x k layer convolves with after ``stride`` x ``stride`` invertible
    downsampling: ``divide`` gives k // stride, the same receptive field in input pixels (the authors' code,
    ThomRC/sra models/architectures/mlp.py: (4, 3, 4, 3) -> (2, 3, 2, 3)); ``keep`` gives k (rsbench before
    this option: a wider receptive field than the paper's network)."""
    if rule not in DOWNSAMPLED_KERNELS:
        raise RsbenchError(f"model.params.downsampled_kernel={rule!r} is invalid; valid values: "
                           f"{', '.join(DOWNSAMPLED_KERNELS)}")
    if stride == 1 or rule == "keep":
        return int(k)
    if k % stride:
        raise RsbenchError(f"model.params.kernels: kernel {k} is not a multiple of stride {stride} "
                           "(downsampled_kernel=divide)")
    return int(k) // int(stride)


def sra_cnn(spec, channels: Sequence[int] = (8, 8, 16, 16), kernels: Sequence[int] = (4, 3, 4, 3),
            strides: Sequence[int] = (2, 1, 2, 1), hidden: int = 512, iters: int = 30, bias: bool = False,
            downsampled_kernel: str = "divide") -> nn.Module:
    """App. C.1: BCOP convolutions with channels (8, 8, 16, 16), kernels (4, 3, 4, 3); stride 2 is invertible
    downsampling before the convolution, whose kernel :func:`conv_kernel` sets (default: the authors' k // 2);
    one Björck FC layer of 512 units; ReLU everywhere; no pooling; bias-free layers as in the authors' code
    (``bias=True, downsampled_kernel=keep`` is the network rsbench trained before, which old checkpoints hold)."""
    layers: list[nn.Module] = []
    c, h, w = spec.shape
    for cout, k, s in zip(channels, kernels, strides, strict=True):
        if s == 2:
            layers.append(InvertibleDownsampling())
            c, h, w = 4 * c, h // 2, w // 2
        layers += [BCOPConv2d(c, int(cout), conv_kernel(int(k), int(s), downsampled_kernel), iters, bias=bias),
                   nn.ReLU()]
        c = int(cout)
    layers += [nn.Flatten(), BjorckLinear(c * h * w, int(hidden), iters, bias=bias), nn.ReLU(),
               BjorckLinear(int(hidden), spec.num_classes, iters, bias=bias)]
    return _unnormalized(nn.Sequential(*layers))


# params an older checkpoint lacks took these values when it was trained (rsbench.models.checkpoint.load_model)
sra_mlp.legacy_params = {"bias": True}
sra_cnn.legacy_params = {"bias": True, "downsampled_kernel": "keep"}


MODELS.register("sra_mlp")(sra_mlp)
MODELS.register("sra_cnn")(sra_cnn)


def output_moments(model: nn.Module, x: Tensor, var_x: float) -> tuple[Tensor, Tensor]:
    """Moment-propagated output mean and variance for inputs x + N(0, var_x I)."""
    mean, var = x, torch.full_like(x, float(var_x))
    if hasattr(model, "mean") and hasattr(model, "std") and hasattr(model, "net"):  # NormalizedModel
        mean, var = (mean - model.mean) / model.std, var / model.std.square()
        model = model.net
    return propagate_moments(model, mean, var)
