"""Mixture-of-Gaussians smoothing: noise semantics, the three certificates against halfspace truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm

from halfspace import Halfspace, certify_at_distances, point_at_distance
from rsbench.certify.bounds import hoeffding_lower, hoeffding_upper
from rsbench.certify.certificates import (
    gaussian_l2_radius,
    mixture_componentwise_radius,
    mixture_pooled_radius,
    mixture_worst_case,
    mog_paper_radius,
    mog_sum_radius,
)
from rsbench.certify.sampling import PointSampler
from rsbench.errors import RsbenchError
from rsbench.methods import make_method
from rsbench.noise import GaussianMixtureNoise, GaussianNoise, evenly_spaced_sigmas, sum_of_gaussians
from rsbench.noise.mixture import stratified_allocation

INTERVALS = [(0.25, 0.5), (0.5, 1.0), (0.1, 1.0)]


def test_evenly_spaced_sigmas() -> None:
    assert evenly_spaced_sigmas(1, 0.25, 0.5) == (0.5,)
    assert evenly_spaced_sigmas(3, 0.25, 0.5) == pytest.approx((0.25, 0.375, 0.5))
    assert evenly_spaced_sigmas(10, 0.5, 1.0)[-1] == 1.0 and len(evenly_spaced_sigmas(10, 0.5, 1.0)) == 10
    with pytest.raises(RsbenchError, match="K=0"):
        evenly_spaced_sigmas(0, 0.25, 0.5)
    with pytest.raises(RsbenchError, match="must not exceed"):
        evenly_spaced_sigmas(2, 0.6, 0.5)


def test_design_counterexample_paper_radius_is_unsound() -> None:
    """DESIGN.md: halfspace at distance 0.1, sigmas {0.25, 0.5}, equal weights, true mixture."""
    b, sigmas, w = 0.1, (0.25, 0.5), (0.5, 0.5)
    p_k = [norm.cdf(b / s) for s in sigmas]
    p_a = float(np.dot(w, p_k))
    assert p_a == pytest.approx(0.617, abs=5e-4)
    assert mog_paper_radius(p_a, sigmas) == pytest.approx(0.149, abs=5e-4)  # > 0.1 = the true radius
    assert mixture_componentwise_radius(p_k, None, w, sigmas) == pytest.approx(0.1, rel=1e-6)
    assert mixture_componentwise_radius(p_k, None, w, sigmas) <= 0.1
    method = make_method({"name": "mog", "K": 2, "sigma_min": 0.25, "sigma_max": 0.5, "certificate": "paper"})
    assert method.sound is False and "NOT sound" in method.warning
    for semantics, cert in (("mixture", "pooled"), ("sum", "exact")):  # the default is sound
        method = make_method({"name": "mog", "K": 2, "sigma_min": 0.25, "sigma_max": 0.5, "semantics": semantics})
        assert method.certificate == cert and method.sound and method.warning is None


@pytest.mark.parametrize("k", [1, 2, 5, 10])
@pytest.mark.parametrize("interval", INTERVALS)
@pytest.mark.parametrize("distance", [0.02, 0.1, 0.3, 0.7])
def test_sound_certificates_from_exact_probabilities(k, interval, distance) -> None:
    sigmas = evenly_spaced_sigmas(k, *interval)
    for weights in (np.full(k, 1.0 / k), np.random.default_rng(k).dirichlet(np.ones(k))):
        p_k = [norm.cdf(distance / s) for s in sigmas]
        r = mixture_componentwise_radius(p_k, None, weights, sigmas)
        assert r <= distance * (1 + 1e-12) and r == pytest.approx(distance, rel=1e-6)  # sound (to rounding), tight
        # any valid lower bounds (smaller p_k) can only shrink it
        assert mixture_componentwise_radius([p - 0.01 for p in p_k], None, weights, sigmas) < distance
        p = float(np.dot(weights, p_k))  # the pooled certificate sees only the mixture's probability
        r = mixture_pooled_radius(p, weights, sigmas)
        assert 0 < r <= distance * (1 + 1e-12)  # sound; looser than componentwise given exact p_k
        assert mixture_pooled_radius(p - 0.01, weights, sigmas) < r
    s_tot = float(np.sqrt(np.sum(np.square(sigmas))))
    p_sum = norm.cdf(distance / s_tot)
    assert mog_sum_radius(p_sum, sigmas) == pytest.approx(distance, rel=1e-6)
    assert mog_paper_radius(p_sum, sigmas) <= distance + 1e-12  # sound (but loose) under the sum


def test_k1_reduces_to_cohen() -> None:
    for p in (0.6, 0.9, 0.999):
        assert mixture_componentwise_radius([p], None, [1.0], [0.5]) == gaussian_l2_radius(p, 0.5)
        assert mixture_pooled_radius(p, [1.0], [0.5]) == gaussian_l2_radius(p, 0.5)
        assert mixture_pooled_radius(p, [0.5, 0.5], [0.5, 0.5]) == pytest.approx(gaussian_l2_radius(p, 0.5), rel=1e-6)
        assert mog_paper_radius(p, [0.5]) == gaussian_l2_radius(p, 0.5) == mog_sum_radius(p, [0.5])


def _soft_p1(margin: float, scale: float, temperature: float) -> float:
    """E[sigmoid((margin + scale Z) / T)] by Gauss-Hermite quadrature (soft smoothing of a halfspace)."""
    z, wz = np.polynomial.hermite_e.hermegauss(120)
    return float(np.sum(wz / np.sqrt(2 * np.pi) / (1 + np.exp(-(margin + scale * z) / temperature))))


@pytest.mark.parametrize("temperature", [0.05, 0.5])
def test_soft_componentwise_from_exact_scores_is_sound(temperature) -> None:
    """Soft smoothing of a halfspace is symmetric, so its true radius is still the distance."""
    sigmas = evenly_spaced_sigmas(4, 0.25, 1.0)
    weights = np.full(4, 0.25)
    for distance in (0.05, 0.2, 0.5):
        p1 = [_soft_p1(distance, s, temperature) for s in sigmas]
        r = mixture_componentwise_radius(p1, [[1 - p] for p in p1], weights, sigmas)
        assert 0 < r <= distance + 1e-9
        p = float(np.dot(weights, p1))
        assert 0 < mixture_pooled_radius(p, weights, sigmas, 1 - p) <= distance + 1e-9


@pytest.mark.parametrize("interval", INTERVALS)
@pytest.mark.parametrize("p", [0.3, 0.6, 0.9, 0.999])
def test_worst_case_split_is_the_minimum(interval, p) -> None:
    """No split of the pooled probability over components (each obeying Cohen's bound) does better than the
    adversary's: random splits with sum_k w_k p_k = p all keep at least mixture_worst_case(p, R)."""
    rng = np.random.default_rng(0)
    sigmas = np.asarray(evenly_spaced_sigmas(5, *interval))
    weights = rng.dirichlet(np.ones(5))
    for radius in (0.05, 0.3, 1.0):
        worst = mixture_worst_case(p, radius, weights, sigmas)
        assert worst <= p
        for _ in range(200):  # p_k = p + u d with sum_k w_k d_k = 0, u scaled to keep every p_k in [0, 1]
            d = rng.normal(size=5)
            d -= weights @ d
            room = np.min(np.where(d > 0, (1 - p) / d, p / -d))
            p_k = p + rng.uniform(0, 1) * room * d
            assert worst <= float(weights @ norm.cdf(norm.ppf(p_k) - radius / sigmas)) + 1e-12


def test_pooled_is_sharper_than_componentwise_at_the_issue_setting() -> None:
    """Issue 16: at N = 2,000, alpha = 0.001, sigma in [0.5, 1], K = 10 the largest radius componentwise can
    certify is 1.215 (K bounds on N/K draws at alpha/K); the pooled certificate's is 1.941."""
    sigmas, w = evenly_spaced_sigmas(10, 0.5, 1.0), [0.1] * 10
    per_component = (0.001 / 10) ** (1 / 200)  # Clopper-Pearson lower bound of 200 successes in 200 draws
    assert mixture_componentwise_radius([per_component] * 10, None, w, sigmas) == pytest.approx(1.215, abs=1e-3)
    assert mixture_pooled_radius(0.001 ** (1 / 2000), w, sigmas) == pytest.approx(1.941, abs=1e-3)


def test_sum_and_mixture_noise_distributions() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(1, 8, 8)
    sigmas = evenly_spaced_sigmas(5, 0.25, 0.5)
    eps = sum_of_gaussians(sigmas).sample(x, 20_000, g).flatten(1)
    cov = torch.cov(eps.T)
    s2 = sum(s * s for s in sigmas)
    assert float(cov.diagonal().mean()) == pytest.approx(s2, rel=0.01)
    assert float((cov - torch.diag(cov.diagonal())).abs().max()) < 0.05 * s2
    # mixture: each draw's per-pixel std is one component's sigma, picked with the weights
    mix = GaussianMixtureNoise(sigmas=(0.2, 1.0), weights=(0.25, 0.75))
    std = mix.sample(torch.zeros(1, 32, 32), 8000, g).flatten(1).std(dim=1)
    small = std < 0.6
    assert float(small.float().mean()) == pytest.approx(0.25, abs=0.015)
    assert float(std[small].mean()) == pytest.approx(0.2, rel=0.02)
    assert float(std[~small].mean()) == pytest.approx(1.0, rel=0.02)


def test_k1_mixture_draws_equal_gaussian_draws() -> None:
    x = torch.rand(1, 5, 5)
    a = GaussianMixtureNoise((0.5,), (1.0,)).sample(x, 50, torch.Generator().manual_seed(3))
    b = GaussianNoise(0.5).sample(x, 50, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_stratified_allocation() -> None:
    assert stratified_allocation(10, [0.5, 0.5]) == [5, 5]
    assert sum(stratified_allocation(1001, [0.2, 0.3, 0.5])) == 1001
    with pytest.raises(RsbenchError, match="too small"):
        stratified_allocation(2, [1 / 3] * 3)


SHAPE = (1, 8, 8)


def _halfspace() -> Halfspace:
    return Halfspace(torch.randn(SHAPE, generator=torch.Generator().manual_seed(11)), b=0.1)


@pytest.mark.parametrize("cfg", [
    {"certificate": "componentwise"},
    {"certificate": "componentwise", "smoothing": "soft", "temperature": 0.1},
    {"certificate": "pooled"},
    {"certificate": "pooled", "smoothing": "soft", "temperature": 0.1},
    {"certificate": "exact", "semantics": "sum"},
    {"certificate": "paper", "semantics": "sum"},
    {"certificate": "paper", "semantics": "sum", "smoothing": "soft", "temperature": 0.1},
])
def test_monte_carlo_sound_certificates_never_exceed_truth(cfg) -> None:
    h = _halfspace()
    method = make_method({"name": "mog", "K": 3, "sigma_min": 0.12, "sigma_max": 0.25, **cfg})
    assert method.sound
    certified = 0
    for distance, _, row in certify_at_distances(method, h, SHAPE, [0.05, 0.15, 0.3, 0.6], 12_000, 4096, seed=1):
        assert row["radius"] <= distance, (distance, row)
        certified += row["radius"] > 0.5 * distance
    assert certified >= 2  # not vacuous


def test_monte_carlo_paper_certificate_under_mixture_exceeds_truth() -> None:
    """The tool itself reports the paper's radius above the true radius, and labels it unsound."""
    h = _halfspace()
    method = make_method({"name": "mog", "K": 2, "sigma_min": 0.25, "sigma_max": 0.5, "certificate": "paper"})
    x = point_at_distance(h, SHAPE, 0.1)
    row = method.certify(PointSampler(h, method.noise, x, 0, 2, 10_000, seed=0), n0=100, n=200_000, alpha=0.001)
    assert row["radius"] > 0.13 and row["sound"] is False  # true radius 0.1, paper radius 0.149
    sound = make_method({"name": "mog", "K": 2, "sigma_min": 0.25, "sigma_max": 0.5, "certificate": "componentwise"})
    row = sound.certify(PointSampler(h, sound.noise, x, 0, 2, 10_000, seed=0), n0=100, n=200_000, alpha=0.001)
    assert 0.08 < row["radius"] <= 0.1 and row["sound"] is True


def test_k1_rows_equal_gaussian_rows() -> None:
    h = _halfspace()
    gauss = make_method({"name": "gaussian", "sigma": 0.5})
    for cert in ("paper", "componentwise", "pooled"):
        mog = make_method({"name": "mog", "K": 1, "sigma_min": 0.25, "sigma_max": 0.5, "certificate": cert})
        for k, distance in enumerate([0.05, 0.4, 2.0]):
            x = point_at_distance(h, SHAPE, distance, seed=k)
            a = gauss.certify(PointSampler(h, gauss.noise, x, k, 2, 500, seed=4), 100, 3000, 0.001)
            b = mog.certify(PointSampler(h, mog.noise, x, k, 2, 500, seed=4), 100, 3000, 0.001)
            assert (a["predict"], a["radius"], a["p_lower"]) == (b["predict"], b["radius"], b["p_lower"])
            assert b["sound"] is True  # at K = 1 the paper's radius is Cohen's


@pytest.mark.parametrize("bad,pattern", [
    ({"certificate": "exact"}, "valid values: paper, componentwise, pooled"),
    ({"certificate": "pooled", "stratified": True}, "needs method.stratified=false"),
    ({"semantics": "sum", "certificate": "componentwise"}, "valid values: paper, exact"),
    ({"semantics": "product"}, "valid values: mixture, sum"),
    ({"smoothing": "medium"}, "valid values: hard, soft"),
    ({"weights": [1, 2]}, "K=3 positive numbers"),
    ({"sigma_min": -0.1}, "sigma_min=-0.1 is invalid"),
    ({"semantics": "sum", "stratified": True}, "mixture only"),
])
def test_bad_parameters(bad, pattern) -> None:
    with pytest.raises(RsbenchError, match=pattern):
        make_method({"name": "mog", "K": 3, "sigma_min": 0.25, "sigma_max": 0.5, **bad})


@pytest.mark.parametrize("p", [0.1, 0.5, 0.93])
def test_hoeffding_coverage_by_simulation(p) -> None:
    rng = np.random.default_rng(1)
    n, alpha, trials = 100, 0.05, 20_000
    # scores in [0, 1] with mean p: a Beta distribution
    means = rng.beta(4 * p, 4 * (1 - p), size=(trials, n)).mean(axis=1)
    assert np.mean([hoeffding_lower(m, n, alpha) <= p for m in means]) >= 1 - alpha
    assert np.mean([hoeffding_upper(m, n, alpha) >= p for m in means]) >= 1 - alpha
