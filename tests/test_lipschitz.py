"""Eq. (5) of the input-dependent RS paper: L in closed-form special cases and the DESIGN.md magnitude."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2, norm

from rsbench.certify.lipschitz import check_lemma3, chi2_ratio, idrs_lipschitz
from rsbench.errors import RsbenchError


def test_constant_sigma_recovers_standard_rs() -> None:
    for sigma in (0.25, 0.65, 1.0):
        assert idrs_lipschitz(sigma, 0.0, 784, 1e-7) == pytest.approx(1.0 / sigma)


def test_paper_setting_magnitude() -> None:
    """DESIGN.md: sigma_min 0.65, Lip 0.5, d 784, p_min 1e-7 -> L about 34.7, so radii <= about 0.15."""
    lip = idrs_lipschitz(0.65, 0.5, 784, 1e-7)
    assert lip == pytest.approx(34.7, abs=0.05)
    max_radius = (norm.ppf(1 - 1e-7) - norm.ppf(1e-7)) / (2 * lip)  # scores are confined to [p_min, 1 - p_min]
    assert max_radius == pytest.approx(0.15, abs=0.01)


def test_ratio_against_direct_formula_and_monotonicity() -> None:
    for d, p in [(10, 0.01), (784, 0.3), (784, 1e-7)]:
        e = chi2.ppf(1 - p, d)
        assert chi2_ratio(p, d) == pytest.approx(e * chi2.pdf(e, d) / norm.pdf(norm.ppf(p)), rel=1e-6)
    ps = np.linspace(0.01, 0.99, 50)
    assert np.all(np.diff(chi2_ratio(ps, 784)) < 0)
    check_lemma3(784, 1e-10)  # the paper: monotone on [1e-10, 1 - 1e-10] for d = 784
    assert np.isfinite(idrs_lipschitz(0.25, 0.1, 3 * 224 * 224, 1e-7))  # ImageNet dimension, log space


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(RsbenchError, match="p_min"):
        idrs_lipschitz(0.65, 0.5, 784, 0.7)
    with pytest.raises(RsbenchError, match="sigma_min"):
        idrs_lipschitz(0.0, 0.5, 784, 1e-7)
    with pytest.raises(RsbenchError, match="Lip"):
        idrs_lipschitz(0.65, -1.0, 784, 1e-7)
