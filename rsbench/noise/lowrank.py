"""Low-rank-plus-isotropic covariance Sigma = U diag(lam_k) U^T + lam I and DSmooth's noise (dsmooth_mahalanobis.md).

U (d x k) holds the top-k principal directions of the attack perturbations delta = x_adv - x (eq. 2),
lam_k their variances; the isotropic floor lam > 0 makes Sigma positive definite. Everything is computed
from the factors, never from a dense d x d matrix (d = 150,528 for ImageNet):
    log det Sigma  = sum_i log(lam_i + lam) + (d - k) log lam
    Sigma^-1       = (1/lam) (I - U diag(lam_i / (lam_i + lam)) U^T)            (Woodbury)
    eps ~ N(0, Sigma):  eps = U (sqrt(lam_k) * a) + sqrt(lam) z,  a ~ N(0, I_k), z ~ N(0, I_d)
DSmooth smooths with N(0, sigma^2 Sigma / det(Sigma)^(1/d)) (eq. 3): the same draw scaled by
sigma / det(Sigma)^(1/(2d)).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rsbench.cache import atomic_write, torch_writer
from rsbench.errors import RsbenchError, check_count, check_positive, require

FORMAT = "rsbench-covariance/1"


@dataclass
class LowRankCovariance:
    basis: torch.Tensor     # U, (d, k), orthonormal columns
    eigvals: torch.Tensor   # lam_k, (k,), >= 0
    floor: float            # lam > 0
    meta: dict[str, Any]
    _factors: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        require(self.basis.dim() == 2 and self.eigvals.shape == (self.basis.shape[1],),
                f"covariance factors have shapes {tuple(self.basis.shape)} and {tuple(self.eigvals.shape)}")
        check_positive("covariance lambda (isotropic floor)", self.floor)
        require(bool(torch.isfinite(self.basis).all()) and bool(torch.isfinite(self.eigvals).all())
                and bool((self.eigvals >= 0).all()), "covariance factors hold NaN, inf or negative eigenvalues")
        u = self.basis.double()
        err = float((u.T @ u - torch.eye(u.shape[1], dtype=u.dtype, device=u.device)).abs().max()) if u.numel() else 0.0
        # log det, sampling and the Woodbury norm all assume U^T U = I; a scaled basis makes the "Mahalanobis"
        # norm indefinite and the radius wrong
        require(err <= 1e-4, f"covariance basis is not orthonormal (max |U^T U - I| = {err:.3g}); the log-det, the "
                "noise and the Mahalanobis norm would be wrong. Rebuild it with LowRankCovariance.from_perturbations")

    @property
    def d(self) -> int:
        return int(self.basis.shape[0])

    @property
    def k(self) -> int:
        return int(self.basis.shape[1])

    def logdet(self) -> float:
        """log det Sigma = sum_i log(lam_i + lam) + (d - k) log lam (float64)."""
        ev = self.eigvals.double()
        return float(torch.log(ev + self.floor).sum()) + (self.d - self.k) * math.log(self.floor)

    def min_eig(self) -> float:
        """Smallest eigenvalue of Sigma: lam when k < d, else min(lam_i) + lam."""
        return self.floor if self.k < self.d else float(self.eigvals.min()) + self.floor

    def mahalanobis(self, delta: torch.Tensor) -> torch.Tensor:
        """sqrt(delta^T Sigma^-1 delta) per row of ``delta`` (any shape (B, ...) with prod(...) = d), by Woodbury."""
        v = delta.flatten(1).double()
        u = self.basis.double().to(v.device)
        proj = v @ u                                              # (B, k)
        shrink = self.eigvals.double().to(v.device) / (self.eigvals.double().to(v.device) + self.floor)
        quad = (v.square().sum(1) - (proj.square() * shrink).sum(1)) / self.floor
        return quad.clamp_min(0).sqrt()

    def draw(self, out: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Fill ``out`` (shape (n, ...) with prod(...) = d) with n draws of N(0, Sigma), in place."""
        flat = out.view(len(out), -1)
        flat.normal_(generator=generator).mul_(math.sqrt(self.floor))  # isotropic part first: with k = 0 this
        if self.k:                                                     # is exactly sqrt(lam) z
            a = torch.randn((len(out), self.k), generator=generator, device=out.device, dtype=out.dtype)
            flat.addmm_(a, self._factor_t(out.device, out.dtype))
        return out

    def _factor_t(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """(U diag(sqrt(lam_k)))^T on ``device`` in ``dtype``, computed once (draw is on the sampling hot path)."""
        key = (str(device), dtype)
        if key not in self._factors:
            self._factors[key] = (self.basis.to(device, dtype) * self.eigvals.sqrt().to(device, dtype)).T
        return self._factors[key]

    def to(self, device: torch.device | str) -> LowRankCovariance:
        return LowRankCovariance(self.basis.to(device), self.eigvals.to(device), self.floor, self.meta)

    # -- construction and storage ------------------------------------------------------------------------------
    @classmethod
    def from_perturbations(cls, deltas: torch.Tensor, k: int, floor: float,
                           meta: dict[str, Any] | None = None) -> LowRankCovariance:
        """Rank-k PCA of the sample covariance of ``deltas`` (N, ...) (eq. 2), plus ``floor`` * I.

        Uses the thin SVD of the centred (N, d) matrix: Sigma_hat = V S^2 V^T / (N - 1); the top-k right
        singular vectors are U. Costs O(N^2 d) and O(N d) memory; no d x d matrix is formed.
        """
        check_count("covariance.k", k)
        x = deltas.flatten(1).double()
        n, d = x.shape
        require(n >= 2, f"covariance needs at least 2 perturbations, got {n}")
        require(k <= min(n - 1, d), f"covariance.k={k} exceeds the rank available from {n} perturbations "
                f"in d={d} (at most {min(n - 1, d)})")
        with one_thread():  # LAPACK and torch's reductions split work by thread count: fix the order
            x = x - x.mean(0, keepdim=True)
            _, s, vh = torch.linalg.svd(x, full_matrices=False)
        eig = s[:k].square() / (n - 1)
        return cls(vh[:k].T.float().contiguous(), eig.float(), float(floor), dict(meta or {}, n=n, d=d, k=k))

    def save(self, path: str | Path) -> Path:
        return atomic_write(path, torch_writer({"format": FORMAT, "basis": self.basis.cpu(),
                                                "eigvals": self.eigvals.cpu(), "floor": self.floor, "meta": self.meta}))

    @classmethod
    def load(cls, path: str | Path) -> LowRankCovariance:
        path = Path(path)
        require(path.is_file(), f"covariance file {path} does not exist")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise RsbenchError(f"covariance file {path} is corrupted or not a torch file: {exc}") from exc
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            raise RsbenchError(f"{path} is not an rsbench covariance file (expected format {FORMAT!r})")
        return cls(blob["basis"], blob["eigvals"], float(blob["floor"]), dict(blob.get("meta") or {}))


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one CPU thread inside: floating-point work whose result must not depend on the machine's cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class AnisotropicGaussianNoise:
    """DSmooth's smoothing noise N(0, sigma^2 Sigma / det(Sigma)^(1/d)) (eq. 3)."""

    cov: LowRankCovariance
    sigma: float

    def __post_init__(self) -> None:
        check_positive("sigma", self.sigma)
        self.scale = self.sigma * math.exp(-self.cov.logdet() / (2 * self.cov.d))  # sigma / det^(1/(2d))

    def fill(self, out: torch.Tensor, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """out <- x + scale * eps, eps ~ N(0, Sigma), for each row of ``out``."""
        require(math.prod(x.shape) == self.cov.d, f"input of {math.prod(x.shape)} values does not match the "
                f"covariance's d = {self.cov.d}")
        self.cov.draw(out, generator)
        return torch.add(x, out, alpha=self.scale, out=out)

    def sample(self, x: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.fill(torch.empty((n, *x.shape), device=x.device, dtype=x.dtype), x, generator)
