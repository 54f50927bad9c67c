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
