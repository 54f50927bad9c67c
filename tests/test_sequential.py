"""Sequential certification: valid under optional stopping (simulation), sound and cheaper on a halfspace."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import norm

from conftest import TINY_CERTIFY, run_cli
from halfspace import Halfspace, point_at_distance
from rsbench.certify.bounds import clopper_pearson_lower
from rsbench.certify.sampling import PointSampler
from rsbench.certify.sequential import SequentialSpec, look_schedule, sequential_lower_bound
from rsbench.methods import make_method


def test_look_schedule() -> None:
    assert look_schedule(1000, 100_000) == [1000, 2000, 4000, 8000, 16000, 32000, 64000, 100_000]
    assert look_schedule(1000, 1000) == [1000]
    assert look_schedule(1000, 500) == [500]


@pytest.mark.parametrize("p_stop", [0.9, 0.99, 0.999, 1.1])
def test_error_rate_under_optional_stopping_is_below_alpha(p_stop) -> None:
    """Across many simulated points and stopping times, P(reported lower bound > true p) <= alpha."""
    rng = np.random.default_rng(int(p_stop * 1000))
    alpha, trials = 0.05, 4000
    ps = np.concatenate([rng.uniform(0.3, 1.0, trials // 2), 1 - 10 ** rng.uniform(-4, -1, trials // 2)])
    errors, stops = 0, []
    for p in ps:
        res = sequential_lower_bound(lambda a, b, p=p: int(rng.binomial(b - a, p)), 200, 12_800, alpha, p_stop, 100)
        errors += res.p_lower > p
        stops.append(res.n_used)
    se = np.sqrt(alpha * (1 - alpha) / trials)
    assert errors / trials <= alpha + 3 * se
    if p_stop < 1:
        assert len(set(stops)) > 2  # it really stopped at different looks


def test_same_bound_as_fixed_n_when_it_never_stops() -> None:
    res = sequential_lower_bound(lambda a, b: (b - a) // 2 + 1, 100, 400, 0.01, p_stop=2.0, block=100)
    assert res.n_used == 400 and res.looks == 3 and res.decided == "exhausted"
    assert res.p_lower == pytest.approx(clopper_pearson_lower(res.successes, 400, 0.01 / 3))


def test_halfspace_sequential_is_sound_and_cheaper() -> None:
    shape = (1, 8, 8)
    h = Halfspace(torch.randn(shape, generator=torch.Generator().manual_seed(2)), b=0.2)
    method = make_method({"name": "gaussian", "sigma": 0.25})
    spec = SequentialSpec(n_min=1000, max_radius=0.5)
    for k, distance in enumerate([0.05, 0.3, 0.8, 2.0]):
        x = point_at_distance(h, shape, distance, seed=k)
        seq = method.certify(PointSampler(h, method.noise, x, k, 2, 2000, 0), 100, 64_000, 0.001, spec)
        fixed = method.certify(PointSampler(h, method.noise, x, k, 2, 2000, 0), 100, 64_000, 0.001)
        assert seq["radius"] <= distance and fixed["radius"] <= distance
        if distance >= 0.8:  # far from the boundary: decided early, and r >= max_radius certified either way
            assert seq["n_used"] < 64_000 / 3 and seq["radius"] >= 0.5 and fixed["radius"] >= 0.5
        assert fixed["n_used"] == 64_000
    # a point on the wrong side stops early as an abstention
    x = point_at_distance(h, shape, 0.0)
    x = x - 0.5 * h.w.view(shape) / h.w.norm()
    seq = method.certify(PointSampler(h, method.noise, x, 9, 2, 2000, 0), 100, 64_000, 0.001, spec)
    assert seq["predict"] in (0, -1) and seq["radius"] <= 0.5 + 1e-12


def test_cli_sequential(tmp_path, tiny_model) -> None:
    run_cli(["certify", *TINY_CERTIFY, "certify.n=3000", "certify.sequential=true", "certify.max_radius=0.3",
             "certify.seq_n_min=500", f"model.checkpoint={tiny_model}", f"hydra.run.dir={tmp_path / 'run'}"],
            tmp_path)
    df = pd.read_csv(tmp_path / "run" / "certify.csv")
    assert (df["n_used"] <= 3000).all() and set(df["n_used"]) <= {500, 1000, 2000, 3000}
    # each radius is at most what its stopping look can certify: sigma * Phi^-1((alpha / J)^(1 / n_used)), J = 4
    assert (df["radius"] <= 0.25 * norm.ppf((0.01 / 4) ** (1 / df["n_used"])) + 1e-9).all()
    assert (df["n_used"] < 3000).any()  # some points were decided early
    with pytest.raises(SystemExit):
        run_cli(["certify", *TINY_CERTIFY, "certify.sequential=true", f"model.checkpoint={tiny_model}",
                 f"hydra.run.dir={tmp_path / 'bad'}"], tmp_path)


# -- sequential certification for every hard-vote method ----------------------------------------------------------

def test_p_for_radius_inverts_each_methods_radius() -> None:
    from rsbench.certify.certificates import (
        gaussian_l2_radius,
        laplace_l1_radius,
        mahalanobis_radius,
        mog_paper_radius,
        mog_sum_radius,
    )
    from rsbench.certify.sequential import p_for_radius

    sigmas = [0.25, 0.375, 0.5]
    for radius_of in (lambda p: gaussian_l2_radius(p, 0.5), lambda p: laplace_l1_radius(p, 0.3),
                      lambda p: mahalanobis_radius(p, 0.25, -40.0, 36), lambda p: mog_paper_radius(p, sigmas),
                      lambda p: mog_sum_radius(p, sigmas)):
        for r in (0.01, 0.3, 1.0):
            p = p_for_radius(radius_of, r)
            assert 0.5 < p < 1 and radius_of(p) >= r and radius_of(p - 1e-12) < r
    assert p_for_radius(lambda p: gaussian_l2_radius(p, 0.5), 0.75) == pytest.approx(norm.cdf(1.5), abs=1e-14)
    assert p_for_radius(lambda p: min(p, 0.6), 1.0) > 1  # unreachable: never stops to certify


@pytest.mark.parametrize("threshold", [0.8, 0.95, 1.1])
def test_componentwise_error_rate_under_optional_stopping_is_below_alpha(threshold) -> None:
    """K streams, looks at alpha / (K J): across many simulated points and stopping times, the chance that
    any component's reported lower bound exceeds its true p stays below alpha."""
    from rsbench.certify.sequential import sequential_component_bounds

    rng = np.random.default_rng(int(threshold * 100))
    alpha, trials, w = 0.05, 3000, [0.5, 0.3, 0.2]
    allocations = [[100 * 2 ** j * 5 // 10, 100 * 2 ** j * 3 // 10, 100 * 2 ** j * 2 // 10] for j in range(6)]
    errors, stops = 0, []
    for _ in range(trials):
        p = np.where(rng.random(3) < 0.5, rng.uniform(0.3, 1.0, 3), 1 - 10 ** rng.uniform(-3, -1, 3))
        res = sequential_component_bounds(lambda k, a, b, p=p: int(rng.binomial(b - a, p[k])), allocations, alpha,
                                          w, lambda lower: float(np.dot(w, lower)) >= threshold)
        errors += any(lo > pk for lo, pk in zip(res.p_lower, p, strict=True))
        stops.append(res.looks)
    se = np.sqrt(alpha * (1 - alpha) / trials)
    assert errors / trials <= alpha + 3 * se
    if threshold < 1:
        assert len(set(stops)) > 2


def _dsmooth_method():
    from rsbench.noise.lowrank import AnisotropicGaussianNoise, LowRankCovariance

    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(64, 2, generator=g, dtype=torch.float64))
    cov = LowRankCovariance(q.float(), torch.tensor([2.0, 0.5]), 0.1, {})
    method = make_method({"name": "dsmooth", "sigma": 0.25, "k": 2})
    method.cov, method._noise = cov, AnisotropicGaussianNoise(cov, 0.25)
    u = cov.basis.double()
    return method, u @ torch.diag(cov.eigvals.double()) @ u.T + cov.floor * torch.eye(64, dtype=torch.float64)


@pytest.mark.parametrize("name", ["laplace", "dsmooth", "mog_componentwise", "mog_pooled", "mog_exact_sum"])
def test_halfspace_sequential_every_method_is_sound_and_cheaper(name) -> None:
    """For each hard-vote method: every sequential radius stays below the true radius in the method's norm,
    and points far from the boundary stop early having certified max_radius."""
    shape = (1, 8, 8)
    h = Halfspace(torch.randn(shape, generator=torch.Generator().manual_seed(3)), b=0.1)
    w = h.w.double()
    if name == "laplace":
        method = make_method({"name": "laplace", "scale": 0.2})
        truth = lambda x: float(h.margin(x.unsqueeze(0))[0]) / float(h.w.abs().max())  # l1 distance  # noqa: E731
    elif name == "dsmooth":
        method, dense = _dsmooth_method()
        truth = lambda x: float(h.margin(x.unsqueeze(0))[0]) / float(torch.sqrt(w @ dense @ w))  # noqa: E731
    else:
        cfg = {"mog_componentwise": {"certificate": "componentwise"}, "mog_pooled": {"certificate": "pooled"},
               "mog_exact_sum": {"certificate": "exact", "semantics": "sum"}}[name]
        method = make_method({"name": "mog", "K": 3, "sigma_min": 0.12, "sigma_max": 0.25, **cfg})
        truth = lambda x: float(h.margin(x.unsqueeze(0))[0]) / float(h.w.norm())  # noqa: E731
    spec = SequentialSpec(n_min=1000, max_radius=0.1)
    early = 0
    for k, distance in enumerate([0.02, 0.1, 0.5, 1.5]):
        x = point_at_distance(h, shape, distance, seed=k)
        row = method.certify(PointSampler(h, method.noise, x, k, 2, 4000, 0), 100, 32_000, 0.001, spec)
        assert row["radius"] <= truth(x) + 1e-12, (distance, row)
        assert row["sound"] and 1000 <= row["n_used"] <= 32_000
        if row["n_used"] < 32_000 / 3:
            early += 1
            assert row["radius"] >= 0.1 or row["predict"] == -1
    assert early >= 1  # the far points were decided early


@pytest.mark.parametrize("method", ["laplace", "mog"])
def test_cli_sequential_other_methods(tmp_path, tiny_model, method) -> None:
    run_cli(["certify", *TINY_CERTIFY, f"method={method}", "certify.n=3000", "certify.sequential=true",
             "certify.max_radius=0.2", "certify.seq_n_min=500", f"model.checkpoint={tiny_model}",
             f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    df = pd.read_csv(tmp_path / "run" / "certify.csv")
    assert (df["n_used"] <= 3000).all() and (df["n_used"] >= 500).all() and df["sound"].all()


def test_sequential_paper_certificate_under_mixture_stays_labelled_unsound() -> None:
    shape = (1, 8, 8)
    h = Halfspace(torch.randn(shape, generator=torch.Generator().manual_seed(3)), b=0.1)
    method = make_method({"name": "mog", "K": 2, "sigma_min": 0.25, "sigma_max": 0.5, "certificate": "paper"})
    x = point_at_distance(h, shape, 1.0)
    row = method.certify(PointSampler(h, method.noise, x, 0, 2, 4000, 0), 100, 32_000, 0.001,
                         SequentialSpec(n_min=1000, max_radius=0.1))
    assert row["sound"] is False and row["n_used"] < 32_000
