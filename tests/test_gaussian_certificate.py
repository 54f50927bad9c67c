"""Cohen et al.'s Gaussian certificate against the closed-form truth of a halfspace classifier."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import norm

from halfspace import Halfspace, OneHotHalfspace, certify_at_distances, point_at_distance
from rsbench.certify.certificates import gaussian_l2_radius
from rsbench.certify.sampling import PointSampler
from rsbench.certify.smoothing import ABSTAIN
from rsbench.errors import RsbenchError
from rsbench.methods import make_method

SHAPE = (1, 8, 8)


def _halfspace(seed: int = 1) -> Halfspace:
    g = torch.Generator().manual_seed(seed)
    return Halfspace(torch.randn(SHAPE, generator=g), b=0.3)


@pytest.mark.parametrize("sigma", [0.12, 0.25, 0.5, 1.0])
@pytest.mark.parametrize("distance", [0.01, 0.1, 0.3, 0.9])
def test_exact_probability_gives_exact_distance(sigma: float, distance: float) -> None:
    h = _halfspace()
    x = point_at_distance(h, SHAPE, distance)
    assert h.distance(x) == pytest.approx(distance, rel=1e-5)
    assert gaussian_l2_radius(h.gaussian_p1(x, sigma), sigma) == pytest.approx(distance, rel=1e-4)


def test_radius_formula_and_abstain_region() -> None:
    assert gaussian_l2_radius(norm.cdf(2.0), 0.5) == pytest.approx(1.0)
    assert gaussian_l2_radius(0.5, 0.5) == 0.0
    assert gaussian_l2_radius(0.3, 0.5) == 0.0
    with pytest.raises(RsbenchError, match="sigma"):
        gaussian_l2_radius(0.9, 0.0)


@pytest.mark.parametrize("sigma", [0.25, 0.5])
def test_monte_carlo_certificate_never_exceeds_truth(sigma: float) -> None:
    h = _halfspace()
    method = make_method({"name": "gaussian", "sigma": sigma})
    n, alpha = 20_000, 0.001
    for distance, x, row in certify_at_distances(method, h, SHAPE, [0.02, 0.1, 0.25, 0.5, 0.8], n, 4096, alpha=alpha):
        assert row["sound"] is True and row["norm"] == "l2"
        assert row["radius"] <= distance + 1e-12, (distance, row)
        p1 = h.gaussian_p1(x, sigma)
        # ... and the bound is informative: p_lower is within 6 standard errors of the true p.
        slack = p1 - 6 * (p1 * (1 - p1) / n) ** 0.5
        if slack > 0.6:
            assert row["predict"] == 1
            assert row["radius"] >= sigma * norm.ppf(slack), (distance, row)
        # the estimate itself: the count of the selected class is binomial(n, p1) or binomial(n, 1 - p1)
        freq = row["count"] / n
        assert min(abs(freq - p1), abs(freq - (1 - p1))) < 5 * (p1 * (1 - p1) / n) ** 0.5 + 1e-9


def test_point_on_hyperplane_abstains() -> None:
    h = _halfspace()
    method = make_method({"name": "gaussian", "sigma": 0.5})
    x = point_at_distance(h, SHAPE, 0.0)
    row = method.certify(PointSampler(h, method.noise, x, 0, 2, 1000, 0), n0=100, n=2000, alpha=0.001)
    assert row["predict"] == ABSTAIN and row["radius"] == 0.0


@pytest.mark.parametrize("bounds", ["bernstein", "hoeffding"])
def test_soft_smoothing_never_exceeds_truth(bounds: str) -> None:
    """Soft Gaussian RS (the IDRS paper's baselines) on a halfspace: radius <= the distance, and not vacuous."""
    g = torch.Generator().manual_seed(4)
    h = OneHotHalfspace(torch.randn(SHAPE, generator=g), b=0.2)
    method = make_method({"name": "gaussian", "sigma": 0.25, "smoothing": "soft", "bounds": bounds})
    assert method.sound
    certified = 0
    for distance, x, row in certify_at_distances(method, h, SHAPE, [0.02, 0.1, 0.3, 0.6], 20_000, 5000, seed=3):
        assert row["radius"] <= distance, (distance, row)
        certified += row["radius"] > 0.5 * distance
        # from the exact smoothed scores the same formula is exactly the distance
        p = h.gaussian_p1(x, 0.25)
        assert gaussian_l2_radius(p, 0.25, 1.0 - p) == pytest.approx(distance, rel=1e-4)
    assert certified >= 2


def test_plug_in_soft_bounds_are_labelled_unsound() -> None:
    method = make_method({"name": "gaussian", "sigma": 0.25, "smoothing": "soft", "bounds": "point", "p_min": 1e-7})
    assert method.sound is False and "NOT a certificate" in method.warning
    with pytest.raises(RsbenchError, match="p_min > 0"):
        make_method({"name": "gaussian", "sigma": 0.25, "smoothing": "soft", "bounds": "point"})
