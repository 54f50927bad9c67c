"""Laplace smoothing with an l1 certificate (Teng et al. 2020; DSmooth's LSmooth baseline, ``method=laplace``)."""

from __future__ import annotations

from typing import Any

import torch

from rsbench.certify.bounds import max_certifiable_p
from rsbench.certify.certificates import laplace_l1_radius
from rsbench.certify.recompute import certified_radius, hard_recompute
from rsbench.certify.sampling import PointSampler
from rsbench.certify.sequential import SequentialSpec
from rsbench.certify.smoothing import ABSTAIN, certify_hard, cohen_predict, predict_row
from rsbench.errors import check_positive
from rsbench.methods.base import METHODS
from rsbench.noise.laplace import LaplaceNoise


@METHODS.register("laplace")
class LaplaceSmoothing:
    """Hard smoothing with i.i.d. Laplace(0, b) noise; l1 radius -b log(2 (1 - p_A_lower)) (Teng et al., Thm. 1)."""

    name = "laplace"
    norm = "l1"
    columns = ("method", "certificate", "norm", "sound", "scale", "n0", "n", "n_used", "alpha", "count", "p_lower")
    predict_columns = ("method", "scale", "n", "alpha", "count_a", "count_b", "pvalue")

    def __init__(self, scale: float) -> None:
        self.scale = check_positive("method.scale", scale)
        self.noise = LaplaceNoise(self.scale)
        self.sound = True  # Teng et al.'s Theorem 1 holds for exactly this noise

    def radius_cap(self, n: int, alpha: float) -> float:
        """The largest l1 radius n draws can certify at alpha (all n correct)."""
        return laplace_l1_radius(max_certifiable_p(n, alpha), self.scale)

    @property
    def train_sigma(self) -> float:
        return self.scale * 2 ** 0.5  # Gaussian augmentation with the same per-pixel standard deviation

    def label(self) -> str:
        return f"laplace b={self.scale:g} (l1)"

    def distance(self, delta: torch.Tensor) -> float:
        """The l1 norm this method certifies."""
        return float(delta.abs().sum())

    def certify(self, sampler: PointSampler, n0: int, n: int, alpha: float,
                sequential: SequentialSpec | None = None) -> dict[str, Any]:
        est = certify_hard(sampler, n0, n, alpha, sequential, lambda p: laplace_l1_radius(p, self.scale))
        radius = certified_radius(est.p_lower, lambda p: laplace_l1_radius(p, self.scale))
        return {"predict": est.top if radius > 0 else ABSTAIN, "radius": radius, "method": self.name,
                "certificate": "teng", "norm": self.norm, "sound": self.sound, "scale": self.scale, "n0": n0, "n": n,
                "n_used": est.n, "alpha": alpha, "count": est.count, "p_lower": est.p_lower}

    def recompute(self, row: dict[str, Any], sequential: dict[str, Any] | None = None) -> dict[str, Any]:
        """The row's bound from its votes and its l1 radius, as :meth:`certify` computed them."""
        return hard_recompute(row, sequential, lambda p: laplace_l1_radius(p, self.scale))

    def predict(self, sampler: PointSampler, n: int, alpha: float) -> dict[str, Any]:
        res = cohen_predict(sampler.hard, n, alpha)
        return predict_row(res, self.name, {"scale": self.scale}, n, alpha)
