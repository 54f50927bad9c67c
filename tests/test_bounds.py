"""Clopper-Pearson bounds and the binomial abstain test against closed forms and simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import beta, binomtest

from rsbench.certify.bounds import (
    clopper_pearson_lower,
    clopper_pearson_upper,
    max_certifiable_p,
    top_two_pvalue,
)
from rsbench.errors import RsbenchError


def test_closed_forms() -> None:
    # All successes: P(X = n) = p^n = alpha  =>  p_lower = alpha^(1/n).
    assert clopper_pearson_lower(100, 100, 0.001) == pytest.approx(0.001 ** (1 / 100), rel=1e-12)
    # No successes: p_upper = 1 - alpha^(1/n); bounds at the edges.
    assert clopper_pearson_upper(0, 50, 0.01) == pytest.approx(1 - 0.01 ** (1 / 50), rel=1e-12)
    assert clopper_pearson_lower(0, 10, 0.05) == 0.0
    assert clopper_pearson_upper(10, 10, 0.05) == 1.0
    # Equals the lower end of the two-sided beta interval at 2*alpha (Cohen's proportion_confint).
    assert clopper_pearson_lower(990, 1000, 0.001) == pytest.approx(beta.ppf(0.001, 990, 11))
    assert max_certifiable_p(100_000, 0.001) == pytest.approx(0.001 ** 1e-5)


def test_lower_bound_defines_tail_probability() -> None:
    # At p = p_lower, P(X >= k) = alpha exactly (the defining property of the one-sided bound).
    from scipy.stats import binom
    for k, n in [(7, 10), (60, 100), (9_990, 10_000)]:
        p = clopper_pearson_lower(k, n, 0.01)
        assert binom.sf(k - 1, n, p) == pytest.approx(0.01, rel=1e-6)


@pytest.mark.parametrize("p", [0.3, 0.7, 0.95, 0.995])
def test_coverage_by_simulation(p: float) -> None:
    n, alpha, trials = 200, 0.05, 40_000
    lower = np.array([clopper_pearson_lower(k, n, alpha) for k in range(n + 1)])
    upper = np.array([clopper_pearson_upper(k, n, alpha) for k in range(n + 1)])
    k = np.random.default_rng(0).binomial(n, p, size=trials)
    se = np.sqrt(alpha * (1 - alpha) / trials)
    assert np.mean(lower[k] <= p) >= 1 - alpha - 3 * se
    assert np.mean(upper[k] >= p) >= 1 - alpha - 3 * se
    # ... and not trivially: the bound is informative (coverage is not 100 % with a vacuous bound).
    assert np.mean(lower[k]) > p - 0.15


def test_pvalue_matches_scipy_and_bad_input() -> None:
    assert top_two_pvalue(60, 40) == pytest.approx(binomtest(60, 100, 0.5).pvalue)
    assert top_two_pvalue(0, 0) == 1.0
    with pytest.raises(RsbenchError, match="alpha"):
        clopper_pearson_lower(3, 10, 1.5)
    with pytest.raises(RsbenchError, match="outside"):
        clopper_pearson_lower(11, 10, 0.01)


def test_radius_cap_and_the_n_that_lifts_it() -> None:
    """Gaussian: cap = sigma Phi^-1(alpha^(1/n)); reaching radius r needs n >= ln(alpha) / ln(Phi(r / sigma))."""
    import math

    from scipy.stats import norm

    from rsbench.certify.bounds import n_to_reach
    from rsbench.methods.gaussian import GaussianSmoothing

    g = GaussianSmoothing(sigma=0.25)
    assert g.radius_cap(1000, 0.001) == pytest.approx(0.25 * norm.ppf(0.001 ** (1 / 1000)), rel=1e-9)
    for r in (0.5, 1.0, 1.2):
        need = n_to_reach(lambda m: g.radius_cap(m, 0.001), r, 100)
        assert need == math.ceil(math.log(0.001) / math.log(norm.cdf(r / 0.25))), r
        assert g.radius_cap(need, 0.001) >= r > g.radius_cap(need - 1, 0.001)
    assert n_to_reach(lambda m: g.radius_cap(m, 0.001), 0.1, 1000) == 1000  # already reached: n itself


def test_radius_cap_of_laplace_and_mog_in_closed_form() -> None:
    """Laplace: max(b/2 log(p/(1-p)), -b log(2(1-p))) at p = alpha^(1/n) (Teng et al., Thm. 1); MoG's pooled
    certificate with K = 1 is Cohen's, so its cap is sigma Phi^-1(alpha^(1/n)); componentwise has none."""
    import math

    from scipy.stats import norm

    from rsbench.methods.laplace import LaplaceSmoothing
    from rsbench.methods.mog import MixtureOfGaussiansSmoothing as MixtureOfGaussians

    p = 0.001 ** (1 / 5000)
    b = 0.3
    expected = max(b / 2 * math.log(p / (1 - p)), -b * math.log(2 * (1 - p)))
    assert LaplaceSmoothing(scale=b).radius_cap(5000, 0.001) == pytest.approx(expected, rel=1e-12)
    one = MixtureOfGaussians(K=1, sigma_min=0.25, sigma_max=0.5)
    assert one.radius_cap(5000, 0.001) == pytest.approx(0.5 * norm.ppf(p), rel=1e-9)
    many = MixtureOfGaussians(K=4, sigma_min=0.25, sigma_max=0.5)
    assert 0.25 * norm.ppf(p) < many.radius_cap(5000, 0.001) < 0.5 * norm.ppf(p)  # between its extreme sigmas
    assert MixtureOfGaussians(K=4, sigma_min=0.25, sigma_max=0.5, certificate="componentwise").radius_cap(
        5000, 0.001) is None
