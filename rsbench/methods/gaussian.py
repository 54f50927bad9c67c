"""Standard Gaussian randomized smoothing (Cohen et al. 2019), the baseline of every paper."""

from __future__ import annotations

from typing import Any

from rsbench.certify.certificates import gaussian_l2_radius
from rsbench.certify.sampling import PointSampler
from rsbench.certify.smoothing import ABSTAIN, cohen_certify, cohen_predict
from rsbench.errors import check_positive
from rsbench.methods.base import METHODS
from rsbench.noise.gaussian import GaussianNoise


@METHODS.register("gaussian")
class GaussianSmoothing:
    """Hard smoothing with N(0, sigma^2 I); l2 radius sigma * Phi^-1(p_A_lower) (Cohen et al., Thm. 1)."""

    name = "gaussian"
    columns = ("method", "certificate", "norm", "sound", "sigma", "n0", "n", "alpha", "count", "p_lower")

    def __init__(self, sigma: float) -> None:
        self.sigma = check_positive("sigma", sigma)
        self._noise = GaussianNoise(self.sigma)

    @property
    def noise(self) -> GaussianNoise:
        return self._noise

    @property
    def train_sigma(self) -> float:
        return self.sigma

    def label(self) -> str:
        return f"gaussian σ={self.sigma:g}"

    def certify(self, sampler: PointSampler, n0: int, n: int, alpha: float) -> dict[str, Any]:
        est = cohen_certify(sampler.hard, n0, n, alpha)
        certified = est.p_lower > 0.5
        return {
            "predict": est.top if certified else ABSTAIN,
            "radius": gaussian_l2_radius(est.p_lower, self.sigma) if certified else 0.0,
            "method": self.name, "certificate": "cohen", "norm": "l2", "sound": True,
            "sigma": self.sigma, "n0": n0, "n": n, "alpha": alpha,
            "count": est.count, "p_lower": est.p_lower,
        }

    def predict(self, sampler: PointSampler, n: int, alpha: float) -> dict[str, Any]:
        res = cohen_predict(sampler.hard, n, alpha)
        return {"predict": res.prediction, "method": self.name, "sigma": self.sigma, "n": n, "alpha": alpha,
                "count_a": res.count_a, "count_b": res.count_b, "pvalue": res.pvalue}
