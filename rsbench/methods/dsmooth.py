"""DSmooth (``method=dsmooth``; dsmooth_mahalanobis.md): attack-shaped anisotropic Gaussian smoothing.

Sigma is the covariance of SQUARE + FGSM perturbations delta = x_adv - x on training images (eq. 2), as a
rank-k PCA plus an isotropic floor lam (rsbench.noise.lowrank); noise N(0, sigma^2 Sigma / det(Sigma)^(1/d))
(eq. 3); DCERT = Cohen's CERTIFY under that noise (Alg. 1); radius in the Mahalanobis distance of Lemma 4.5,
and the largest l2 ball inside the certified ellipsoid (column ``l2_radius``).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch

from rsbench.attacks import run_attack
from rsbench.cache import cached, torch_writer
from rsbench.certify.certificates import ellipsoid_l2_ball, mahalanobis_radius
from rsbench.certify.recompute import NotRecomputable, certified_radius, hard_recompute
from rsbench.certify.sampling import PointSampler
from rsbench.certify.sequential import SequentialSpec
from rsbench.certify.smoothing import ABSTAIN, certify_hard, cohen_predict, predict_row
from rsbench.errors import check_count, check_positive, require
from rsbench.log import log
from rsbench.methods.base import METHODS, MethodContext
from rsbench.noise.lowrank import AnisotropicGaussianNoise, LowRankCovariance, one_thread
from rsbench.progress import progress  # tqdm: loaded only when attacks run

DEFAULT_ATTACK = {"name": "square_fgsm", "eps_inf": 0.5, "queries": 5000, "eps_l2": 0.5}


@METHODS.register("dsmooth")
class DSmooth:
    name = "dsmooth"
    norm = "mahalanobis"
    sound = True  # Lemma 4.5 holds for the noise sampled
    columns = ("method", "certificate", "norm", "sound", "sigma", "k", "lam", "n0", "n", "n_used", "alpha", "count",
               "p_lower", "l2_radius", "logdet_d", "min_eig")

    def __init__(self, sigma: float, k: int = 10, lam: float | None = None, covariance: str | None = None,
                 n_images: int = 500, attack: dict[str, Any] | None = None, attack_batch: int = 100) -> None:
        self.sigma = check_positive("method.sigma", sigma)
        self.k = check_count("method.k", k)
        self.lam = None if lam is None else check_positive("method.lam", lam)
        self.covariance_path = covariance
        self.n_images = check_count("method.n_images", n_images)
        self.attack = dict(attack or DEFAULT_ATTACK)
        self.attack_batch = check_count("method.attack_batch", attack_batch)
        self.cov: LowRankCovariance | None = None
        self._noise: AnisotropicGaussianNoise | None = None

    @property
    def noise(self) -> AnisotropicGaussianNoise:
        require(self._noise is not None, "method=dsmooth: prepare() must run first (it builds the covariance)")
        return self._noise

    @property
    def train_sigma(self) -> float:
        return self.sigma

    def label(self) -> str:
        return f"dsmooth σ={self.sigma:g} k={self.k} (Mahalanobis)"

    def distance(self, delta: torch.Tensor) -> float:
        """The Mahalanobis distance sqrt(delta^T Sigma^-1 delta) this method certifies."""
        return float(self.cov.mahalanobis(delta.unsqueeze(0))[0])

    # -- artefacts -------------------------------------------------------------------------------------------
    def prepare(self, ctx: MethodContext) -> dict[str, Any]:
        """Load ``method.covariance`` or build it (attacks on training images, cached) and set up the noise."""
        if self.covariance_path:
            cov = LowRankCovariance.load(self.covariance_path)
            path = Path(self.covariance_path)
        else:
            deltas_path = self._cache_dir(ctx, "perturbations") / "perturbations.pt"
            path = self._cache_dir(ctx, "covariance", k=self.k, lam=self.lam) / "covariance.pt"

            def build(tmp: Path) -> None:
                deltas = self._perturbations(ctx, deltas_path)
                with one_thread():  # the same lam on any machine
                    lam = self.lam if self.lam is not None else float(deltas.flatten(1).double().var(0).mean())
                LowRankCovariance.from_perturbations(
                    deltas, self.k, lam, {"dataset": ctx.spec.name, "attack": self.attack, "lam_default": self.lam
                                          is None, "perturbations": deltas_path.parent.name}).save(tmp)

            cov = LowRankCovariance.load(cached(path, build, "the DSmooth covariance"))
        d = math.prod(ctx.spec.shape)
        require(cov.d == d, f"covariance {path} is for inputs of {cov.d} values, not {ctx.spec.name}'s {d}")
        require(cov.k == self.k or bool(self.covariance_path),
                f"covariance {path} has rank {cov.k}, method.k={self.k}")
        self.cov = cov.to(ctx.device)
        self._noise = AnisotropicGaussianNoise(self.cov, self.sigma)

        log.info("DSmooth: covariance %s (rank %d, lam %.3g, log det / d = %.4f, noise scale %.4f)", path, cov.k,
                 cov.floor, cov.logdet() / d, self._noise.scale)
        return {"covariance": str(path), "k": cov.k, "lam": cov.floor, "logdet": cov.logdet()}

    def _cache_dir(self, ctx: MethodContext, what: str, **extra: Any) -> Path:
        key = json.dumps({"base": {k: ctx.model_meta.get(k) for k in ("checkpoint", "weights_file", "clean_acc")},
                          "dataset": ctx.spec.name, "n_images": self.n_images, "attack": self.attack,
                          "seed": int(ctx.seed), **extra}, sort_keys=True, default=str)
        digest = hashlib.sha1(key.encode()).hexdigest()[:10]
        return Path(ctx.outputs_dir) / "models" / f"{ctx.spec.name}-{what}-{digest}"

    def _perturbations(self, ctx: MethodContext, path: Path) -> torch.Tensor:
        """delta = x_adv - x for the first ``n_images`` of a seeded shuffle of the training split (cached)."""
        cached(path, lambda tmp: torch_writer(self._attack_training_images(ctx, path))(tmp),
               "the DSmooth perturbations")
        return torch.load(path, map_location="cpu", weights_only=True)

    def _attack_training_images(self, ctx: MethodContext, path: Path) -> torch.Tensor:
        ds = ctx.train_data()
        g = torch.Generator().manual_seed(int(ctx.seed))
        order = torch.randperm(len(ds), generator=g)[:self.n_images].tolist()
        log.info("DSmooth: attacking %d training images (%s) for the covariance -> %s", len(order),
                 self.attack, path)
        out = []
        for lo in progress(range(0, len(order), self.attack_batch), desc="covariance attacks", unit="batch"):
            items = [ds[i] for i in order[lo:lo + self.attack_batch]]
            x = torch.stack([t[0] for t in items]).to(ctx.device)
            y = torch.tensor([int(t[1]) for t in items], device=ctx.device)
            out.append((run_attack(self.attack, ctx.model, x, y) - x).cpu())
        return torch.cat(out)

    # -- per point -------------------------------------------------------------------------------------------
    def certify(self, sampler: PointSampler, n0: int, n: int, alpha: float,
                sequential: SequentialSpec | None = None) -> dict[str, Any]:
        """DCERT (Alg. 1) with the radius of Lemma 4.5 (pB = 1 - pA)."""
        logdet = self.cov.logdet()
        est = certify_hard(sampler, n0, n, alpha, sequential,
                           lambda p: mahalanobis_radius(p, self.sigma, logdet, self.cov.d))
        radius = certified_radius(est.p_lower, lambda p: mahalanobis_radius(p, self.sigma, logdet, self.cov.d))
        min_eig = self.cov.min_eig()
        return {"predict": est.top if radius > 0 else ABSTAIN, "radius": radius, "method": self.name,
                "certificate": "lemma4.5", "norm": self.norm, "sound": self.sound, "sigma": self.sigma, "k": self.cov.k,
                "lam": self.cov.floor, "n0": n0, "n": n, "n_used": est.n, "alpha": alpha, "count": est.count,
                "p_lower": est.p_lower, "l2_radius": ellipsoid_l2_ball(radius, min_eig),
                # the covariance summary both radii depend on, so that ``rsbench verify`` can recompute them
                "logdet_d": logdet / self.cov.d, "min_eig": min_eig}

    def recompute(self, row: dict[str, Any], sequential: dict[str, Any] | None = None) -> dict[str, Any]:
        """The row's bound from its votes, its Mahalanobis radius and its largest l2 ball, from the covariance
        summary the row records (``logdet_d`` = log det(Sigma) / d, so d = 1 in Lemma 4.5's factor; ``min_eig``)."""
        if row.get("logdet_d") is None or row.get("min_eig") is None:
            raise NotRecomputable("a DSmooth row without logdet_d / min_eig (written before rows recorded the "
                                  "covariance summary its radius needs)")
        out = hard_recompute(row, sequential, lambda p: mahalanobis_radius(p, self.sigma, row["logdet_d"], 1))
        return {**out, "l2_radius": ellipsoid_l2_ball(out["radius"], row["min_eig"])}

    def predict(self, sampler: PointSampler, n: int, alpha: float) -> dict[str, Any]:
        """DPRED (Alg. 1): Cohen's PREDICT under the anisotropic noise."""
        res = cohen_predict(sampler.hard, n, alpha)
        return predict_row(res, self.name, {"sigma": self.sigma}, n, alpha)
