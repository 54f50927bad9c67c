"""Standard Gaussian randomized smoothing (Cohen et al. 2019), the baseline of every paper."""

from __future__ import annotations

from typing import Any

import torch
from scipy.stats import norm

from rsbench.certify.certificates import gaussian_l2_radius
from rsbench.certify.sampling import BLOCK, PointSampler
from rsbench.certify.seeding import PHASE_ESTIMATE, PHASE_SELECT
from rsbench.certify.sequential import SequentialSpec, sequential_lower_bound
from rsbench.certify.smoothing import ABSTAIN, CertifyEstimate, cohen_certify, cohen_predict
from rsbench.errors import check_positive
from rsbench.methods.base import METHODS
from rsbench.noise.gaussian import GaussianNoise


@METHODS.register("gaussian")
class GaussianSmoothing:
    """Hard smoothing with N(0, sigma^2 I); l2 radius sigma * Phi^-1(p_A_lower) (Cohen et al., Thm. 1)."""

    name = "gaussian"
    columns = ("method", "certificate", "norm", "sound", "sigma", "n0", "n", "n_used", "alpha", "count", "p_lower")

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

    def certify(self, sampler: PointSampler, n0: int, n: int, alpha: float,
                sequential: SequentialSpec | None = None) -> dict[str, Any]:
        """Cohen's CERTIFY; with ``sequential``, the estimation draws stop once the outcome is decided."""
        if sequential is None:
            est, n_used = cohen_certify(sampler.hard, n0, n, alpha), n
        else:
            top = int(torch.argmax(sampler.hard(n0, PHASE_SELECT)))
            res = sequential_lower_bound(
                lambda a, b: int(sampler.counts(b - a, PHASE_ESTIMATE, start=a)[top]), sequential.n_min, n, alpha,
                float(norm.cdf(sequential.max_radius / self.sigma)), BLOCK)
            est, n_used = CertifyEstimate(top, res.successes, res.n_used, res.p_lower), res.n_used
        certified = est.p_lower > 0.5
        return {
            "predict": est.top if certified else ABSTAIN,
            "radius": gaussian_l2_radius(est.p_lower, self.sigma) if certified else 0.0,
            "method": self.name, "certificate": "cohen", "norm": "l2", "sound": True,
            "sigma": self.sigma, "n0": n0, "n": n, "n_used": n_used, "alpha": alpha,
            "count": est.count, "p_lower": est.p_lower,
        }

    def predict(self, sampler: PointSampler, n: int, alpha: float) -> dict[str, Any]:
        res = cohen_predict(sampler.hard, n, alpha)
        return {"predict": res.prediction, "method": self.name, "sigma": self.sigma, "n": n, "alpha": alpha,
                "count_a": res.count_a, "count_b": res.count_b, "pvalue": res.pvalue}
