"""Mixture-of-Gaussians randomized smoothing (``method=mog``; paper: mog_randomized_smoothing.md).

K isotropic Gaussians with standard deviations evenly spaced over [sigma_min, sigma_max], read two ways:
- ``semantics=mixture`` (default; what the paper's experiments ran): each draw picks one component;
- ``semantics=sum`` (the paper's formal definition): eps = eps_1 + ... + eps_K.
Certificates: ``paper`` (Theorem 2; unsound under ``mixture``), ``componentwise`` and ``pooled`` (sound
under ``mixture``: per-component bounds at alpha/K, or the worst case over how the pooled probability splits
across components), ``exact`` (tight under ``sum``); the default (``None``) is the sound one for the semantics:
``pooled`` under ``mixture`` (the sharper one for K >= 5 in docs/REPRODUCTION.md; ``componentwise`` can be
sharper at K = 2), ``exact`` under ``sum``.
Hard or soft smoothing.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from rsbench.certify.bounds import clopper_pearson_lower, max_certifiable_p
from rsbench.certify.certificates import (
    mixture_componentwise_radius,
    mixture_margin,
    mixture_pooled_radius,
    mog_paper_radius,
    mog_sum_radius,
)
from rsbench.certify.recompute import NotRecomputable, certified_radius
from rsbench.certify.sampling import BLOCK, PointSampler
from rsbench.certify.seeding import PHASE_ESTIMATE, PHASE_SELECT
from rsbench.certify.sequential import SequentialSpec, look_schedule, sequential_component_bounds
from rsbench.certify.smoothing import ABSTAIN, certify_hard, cohen_predict, predict_row
from rsbench.certify.soft import soft_class_bounds
from rsbench.errors import RsbenchError, check_positive, require
from rsbench.methods.base import METHODS
from rsbench.noise.mixture import GaussianMixtureNoise, evenly_spaced_sigmas, stratified_allocation, sum_of_gaussians

SEMANTICS = ("mixture", "sum")
SMOOTHINGS = ("hard", "soft")
CERTIFICATES = {"mixture": ("paper", "componentwise", "pooled"), "sum": ("paper", "exact")}
SOUND_DEFAULT = {"mixture": "pooled", "sum": "exact"}  # certificate=null: the sound one
UNSOUND_WARNING = (
    "method=mog certificate=paper semantics=mixture reports the paper's Theorem 2 radius, which is NOT sound "
    "when each noise sample picks one mixture component (Theorem 2 is proved for the K-fold sum). Rows are "
    "labelled sound=False; leave method.certificate unset (pooled) or use componentwise for a sound radius under "
    "this noise.")


def _choice(name: str, value: str, valid: tuple[str, ...], context: str = "") -> str:
    if value not in valid:
        raise RsbenchError(f"method.{name}={value!r} is invalid{context}; valid values: {', '.join(valid)}")
    return value


@METHODS.register("mog")
class MixtureOfGaussiansSmoothing:
    name = "mog"
    columns = ("method", "certificate", "semantics", "smoothing", "stratified", "norm", "sound", "K", "sigma_min",
               "sigma_max", "n0", "n", "n_used", "alpha", "p_lower", "p_runner_upper")

    def __init__(self, K: int, sigma_min: float, sigma_max: float, weights: list[float] | None = None,
                 semantics: str = "mixture", stratified: bool = False, smoothing: str = "hard",
                 temperature: float = 1.0, certificate: str | None = None) -> None:
        self.semantics = _choice("semantics", semantics, SEMANTICS)
        self.smoothing = _choice("smoothing", smoothing, SMOOTHINGS)
        certificate = SOUND_DEFAULT[semantics] if certificate is None else certificate
        self.certificate = _choice("certificate", certificate, CERTIFICATES[semantics],
                                   f" with method.semantics={semantics}")
        self.sigmas = evenly_spaced_sigmas(K, sigma_min, sigma_max)
        self.K, self.sigma_min, self.sigma_max = int(K), float(sigma_min), float(sigma_max)
        if weights is None:
            self.weights = tuple(1.0 / self.K for _ in range(self.K))
        else:
            require(len(weights) == self.K and all(w > 0 for w in weights),
                    f"weights={list(weights)} must hold K={self.K} positive numbers")
            total = float(sum(weights))
            self.weights = tuple(float(w) / total for w in weights)
        self.temperature = check_positive("temperature", temperature) if smoothing == "soft" else None
        require(not (stratified and semantics == "sum"),
                "method.stratified=true applies to method.semantics=mixture only")
        require(not (stratified and self.certificate == "pooled"),
                "method.certificate=pooled bounds the pooled binomial count of mixture draws; it needs "
                "method.stratified=false")
        self.stratified = bool(stratified) or self.certificate == "componentwise"
        # Theorem 2 under a true mixture is unsound for K > 1; at K = 1 it is Cohen's certificate.
        self.sound = not (self.certificate == "paper" and self.semantics == "mixture" and self.K > 1)
        self.warning = None if self.sound else UNSOUND_WARNING
        self.mixture = GaussianMixtureNoise(self.sigmas, self.weights)
        self.noise = self.mixture if self.semantics == "mixture" else sum_of_gaussians(self.sigmas)
        # memoised: sequential certification bisects the same p values at every point to find p_stop
        self._pooled_radius = functools.lru_cache(maxsize=4096)(self.radius_from_pooled)

    def radius_cap(self, n: int, alpha: float) -> float | None:
        """The largest radius n draws can certify at alpha with a certificate of the pooled bound (hard votes,
        all n correct); None for componentwise and soft smoothing."""
        if self.smoothing != "hard" or self.certificate == "componentwise":
            return None
        return self.radius_from_pooled(max_certifiable_p(n, alpha))

    @property
    def train_sigma(self) -> float:
        return self.sigma_max  # the paper certified Cohen's models trained at the largest sigma

    def label(self) -> str:
        soft = ", soft" if self.smoothing == "soft" else ""
        sem = "" if self.semantics == "mixture" else ", sum"
        return f"mog K={self.K} σ∈[{self.sigma_min:g},{self.sigma_max:g}] {self.certificate}{sem}{soft}"

    def _estimate(self, sampler: PointSampler, n: int) -> tuple[list[np.ndarray], list[int]]:
        """Estimation-phase sums (counts or soft scores): one per component if stratified, else one pooled."""
        if not self.stratified:
            return [sampler.counts(n, PHASE_ESTIMATE, temperature=self.temperature).numpy()], [n]
        alloc = stratified_allocation(n, self.weights)
        return [self._component(sampler, k, n_k, temperature=self.temperature).numpy()
                for k, n_k in enumerate(alloc)], alloc

    def _component(self, sampler: PointSampler, k: int, num: int, start: int = 0,
                   temperature: float | None = None) -> torch.Tensor:
        """Estimation-phase sums over draws start..start+num-1 of component k's own stream (K = 1: the
        method's one stream, so K = 1 reproduces Gaussian RS)."""
        return sampler.counts(num, PHASE_ESTIMATE, noise=self.mixture.component(k),
                              stream=() if self.K == 1 else (k,), temperature=temperature, start=start)

    def _bounds(self, total: np.ndarray, n: int, top: int,
                alpha: float) -> tuple[float, float | None, np.ndarray | None]:
        """(top-class lower bound, runner-up upper bound, per-class upper bounds) at overall level alpha."""
        if self.smoothing == "hard":
            return clopper_pearson_lower(int(total[top]), n, alpha), None, None
        lower, upper = soft_class_bounds(total / n, None, n, top, alpha, "hoeffding")
        return lower, float(upper.max()), upper

    def certify(self, sampler: PointSampler, n0: int, n: int, alpha: float,
                sequential: SequentialSpec | None = None) -> dict[str, Any]:
        require(sequential is None or self.smoothing == "hard", "certify.sequential=true needs method.smoothing=hard")
        n_used = n
        if sequential is not None and self.certificate != "componentwise":  # one pooled stream: Cohen's looks
            require(not self.stratified, "certify.sequential=true with a pooled certificate needs "
                                         "method.stratified=false")
            est = certify_hard(sampler, n0, n, alpha, sequential, self._pooled_radius)
            top, p_lower, n_used = est.top, est.p_lower, est.n
            radius = certified_radius(p_lower, self._pooled_radius)
            return self._row(top, radius, n0, n, n_used, alpha, p_lower, 1.0 - p_lower)
        top = int(np.argmax(sampler.counts(n0, PHASE_SELECT, temperature=self.temperature).numpy()))
        if sequential is not None:
            radius, p_lower, n_used = self._sequential_componentwise(sampler, top, n, alpha, sequential)
            p_runner = 1.0 - p_lower
        elif self.certificate == "componentwise":
            sums, alloc = self._estimate(sampler, n)
            bounds = [self._bounds(s, n_k, top, alpha / self.K) for s, n_k in zip(sums, alloc, strict=True)]
            a = [b[0] for b in bounds]
            others = None if self.smoothing == "hard" else [b[2] for b in bounds]
            radius = mixture_componentwise_radius(a, others, self.weights, self.sigmas)
            p_lower = float(np.dot(self.weights, a))
            p_runner = (1.0 - p_lower if others is None
                        else float(np.max(np.asarray(self.weights) @ np.vstack(others))))
        else:
            sums, _ = self._estimate(sampler, n)
            p_lower, p_runner, _ = self._bounds(np.sum(sums, axis=0), n, top, alpha)
            radius = self._pooled_radius(p_lower, p_runner)
            p_runner = 1.0 - p_lower if p_runner is None else p_runner
        return self._row(top, radius, n0, n, n_used, alpha, p_lower, p_runner)

    def recompute(self, row: dict[str, Any], sequential: dict[str, Any] | None = None) -> dict[str, Any]:
        """The row's radius from its pooled bound (paper, pooled or exact); componentwise rows do not record the
        per-component bounds their radius needs."""
        if self.certificate == "componentwise":
            raise NotRecomputable("the componentwise radius needs the per-component bounds, which rows do not record")
        if self.smoothing == "hard":
            return {"radius": certified_radius(row["p_lower"], self.radius_from_pooled)}
        return {"radius": self.radius_from_pooled(row["p_lower"], row["p_runner_upper"])}

    def radius_from_pooled(self, p_lower: float, p_runner: float | None = None) -> float:
        """The radius of a certificate computed from the pooled top-class bound (paper, pooled or exact)."""
        if self.certificate == "pooled":
            return mixture_pooled_radius(p_lower, self.weights, self.sigmas, p_runner)
        radius_fn = mog_paper_radius if self.certificate == "paper" else mog_sum_radius
        return radius_fn(p_lower, self.sigmas, p_runner)

    def _row(self, top: int, radius: float, n0: int, n: int, n_used: int, alpha: float, p_lower: float,
             p_runner: float) -> dict[str, Any]:
        return {
            "predict": top if radius > 0 else ABSTAIN, "radius": float(radius),
            "method": self.name, "certificate": self.certificate, "semantics": self.semantics,
            "smoothing": self.smoothing, "stratified": self.stratified, "norm": "l2", "sound": self.sound,
            "K": self.K, "sigma_min": self.sigma_min, "sigma_max": self.sigma_max,
            "n0": n0, "n": n, "n_used": n_used, "alpha": alpha, "p_lower": p_lower, "p_runner_upper": p_runner,
        }

    def _sequential_componentwise(self, sampler: PointSampler, top: int, n: int, alpha: float,
                                  sequential: SequentialSpec) -> tuple[float, float, int]:
        """Componentwise certificate with looks: at look j each component k has drawn its stratified share of
        n_j (looks doubling from ``sequential.n_min``), bounds at alpha / (K J); stop once the radius reaches
        ``sequential.max_radius``. Returns (radius, sum_k w_k a_k, draws used)."""

        def top_count(k: int, num: int, start: int = 0) -> int:
            return int(self._component(sampler, k, num, start)[top]) if num > 0 else 0

        def successes_in(k: int, a: int, b: int) -> int:
            if a % BLOCK == 0 and b >= a:  # the increment: draws a..b-1 of component k's stream
                return top_count(k, b - a, a)
            return top_count(k, b) - top_count(k, a)  # not on a block boundary: recount the prefixes

        w, s = np.asarray(self.weights), np.asarray(self.sigmas)

        def reaches_max_radius(lower: list[float]) -> bool:  # one margin evaluation, not a bisection
            a = np.asarray(lower)
            return mixture_margin(sequential.max_radius, a, (1.0 - a)[:, None], w, s) > 0

        looks = look_schedule(sequential.n_min, n, BLOCK)
        res = sequential_component_bounds(successes_in, [stratified_allocation(m, self.weights) for m in looks],
                                          alpha, self.weights, reaches_max_radius)
        radius = mixture_componentwise_radius(res.p_lower, None, self.weights, self.sigmas)
        return radius, float(np.dot(self.weights, res.p_lower)), int(sum(res.n_used))

    def predict(self, sampler: PointSampler, n: int, alpha: float) -> dict[str, Any]:
        """Cohen et al.'s PREDICT (hard votes) under this method's noise."""
        res = cohen_predict(sampler.hard, n, alpha)
        return predict_row(res, self.name, {"sigma": self.sigma_max}, n, alpha)
