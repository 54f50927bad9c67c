"""Standard Gaussian randomized smoothing (Cohen et al. 2019), the baseline of every paper.

``smoothing=hard`` (default): majority vote, Clopper-Pearson, radius sigma Phi^-1(p_A_lower).
``smoothing=soft``: expected (p_min-normalised) softmax, radius sigma/2 (Phi^-1(p_A) - Phi^-1(p_B)) from
the bounds of :mod:`rsbench.certify.soft` (the IDRS paper's baselines).
"""

from __future__ import annotations

from typing import Any

from rsbench.certify.bounds import max_certifiable_p
from rsbench.certify.certificates import gaussian_l2_radius
from rsbench.certify.recompute import certified_radius, hard_recompute
from rsbench.certify.sampling import PointSampler
from rsbench.certify.sequential import SequentialSpec
from rsbench.certify.smoothing import ABSTAIN, certify_hard, cohen_predict, predict_row
from rsbench.certify.soft import check_bounds, soft_certify
from rsbench.errors import RsbenchError, check_positive, require
from rsbench.methods.base import METHODS
from rsbench.noise.gaussian import GaussianNoise


@METHODS.register("gaussian")
class GaussianSmoothing:
    """Smoothing with N(0, sigma^2 I); l2 radius sigma * Phi^-1(p_A_lower) (Cohen et al., Thm. 1)."""

    name = "gaussian"
    columns = ("method", "certificate", "smoothing", "bounds", "norm", "sound", "sigma", "n0", "n", "n_used",
               "alpha", "count", "p_lower", "p_runner_upper")

    def __init__(self, sigma: float, smoothing: str = "hard", bounds: str = "bernstein", p_min: float = 0.0,
                 temperature: float = 1.0) -> None:
        self.sigma = check_positive("sigma", sigma)
        if smoothing not in ("hard", "soft"):
            raise RsbenchError(f"method.smoothing={smoothing!r} is invalid; valid values: hard, soft")
        self.smoothing = smoothing
        self.bounds = check_bounds(bounds, p_min) if smoothing == "soft" else "clopper_pearson"
        self.p_min = float(p_min)
        self.temperature = check_positive("temperature", temperature)
        self.sound = self.bounds != "point"
        self.warning = None if self.sound else (
            "method.bounds=point plugs Monte Carlo means into the radius formula: NOT a certificate "
            "(rows are labelled sound=False)")
        self.noise = GaussianNoise(self.sigma)

    @property
    def train_sigma(self) -> float:
        return self.sigma

    def radius_cap(self, n: int, alpha: float) -> float | None:
        """The largest radius n draws can certify at alpha (hard votes, all n correct): sigma Phi^-1(alpha^(1/n))."""
        return gaussian_l2_radius(max_certifiable_p(n, alpha), self.sigma) if self.smoothing == "hard" else None

    def label(self) -> str:
        soft = "" if self.smoothing == "hard" else f", soft ({self.bounds})"
        return f"gaussian σ={self.sigma:g}{soft}"

    def certify(self, sampler: PointSampler, n0: int, n: int, alpha: float,
                sequential: SequentialSpec | None = None) -> dict[str, Any]:
        """Cohen's CERTIFY; with ``sequential``, the estimation draws stop once the outcome is decided."""
        if self.smoothing == "soft":
            return self._certify_soft(sampler, n0, n, alpha, sequential)
        est = certify_hard(sampler, n0, n, alpha, sequential, lambda p: gaussian_l2_radius(p, self.sigma))
        radius = certified_radius(est.p_lower, lambda p: gaussian_l2_radius(p, self.sigma))
        return {
            "predict": est.top if radius > 0 else ABSTAIN,
            "radius": radius,
            **self._fields(n0, n, est.n, alpha), "count": est.count, "p_lower": est.p_lower,
            "p_runner_upper": 1.0 - est.p_lower,
        }

    def _certify_soft(self, sampler: PointSampler, n0: int, n: int, alpha: float,
                      sequential: SequentialSpec | None) -> dict[str, Any]:
        """Soft CERTIFY: R = sigma/2 (Phi^-1(g_A_lower) - Phi^-1(g_B_upper)) (Salman et al. 2019, Lemma 2)."""
        require(sequential is None, "certify.sequential=true is implemented for method.smoothing=hard only")
        est = soft_certify(sampler, n0, n, alpha, self.bounds, self.p_min, self.temperature)
        radius = gaussian_l2_radius(est.p_lower, self.sigma, est.p_runner_upper)
        return {"predict": est.top if radius > 0 else ABSTAIN, "radius": radius, **self._fields(n0, n, n, alpha),
                "count": None, "p_lower": est.p_lower, "p_runner_upper": est.p_runner_upper}

    def _fields(self, n0: int, n: int, n_used: int, alpha: float) -> dict[str, Any]:
        return {"method": self.name, "certificate": "cohen" if self.smoothing == "hard" else "salman_soft",
                "smoothing": self.smoothing, "bounds": self.bounds, "norm": "l2", "sound": self.sound,
                "sigma": self.sigma, "n0": n0, "n": n, "n_used": n_used, "alpha": alpha}

    def recompute(self, row: dict[str, Any], sequential: dict[str, Any] | None = None) -> dict[str, Any]:
        """The row's bound (hard: from its votes) and radius, as :meth:`certify` computed them."""
        if self.smoothing == "hard":
            return hard_recompute(row, sequential, lambda p: gaussian_l2_radius(p, self.sigma))
        return {"radius": gaussian_l2_radius(row["p_lower"], self.sigma, row["p_runner_upper"])}

    def predict(self, sampler: PointSampler, n: int, alpha: float) -> dict[str, Any]:
        res = cohen_predict(sampler.hard, n, alpha)
        return predict_row(res, self.name, {"sigma": self.sigma}, n, alpha)
