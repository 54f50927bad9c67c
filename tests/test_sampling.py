"""The Monte Carlo estimator: correct class frequencies, and seeding that ignores batching."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from conftest import TINY_TRAIN, read_rows, run_cli
from halfspace import Halfspace, point_at_distance
from rsbench.certify.sampling import class_counts, class_counts_many
from rsbench.noise import GaussianNoise

SHAPE = (1, 6, 6)
IDRS_SMALL = ["method.hidden=8", "method.train.max_examples=64", "method.train.samples=1"]


def _setup():
    h = Halfspace(torch.randn(SHAPE, generator=torch.Generator().manual_seed(3)), b=-0.2)
    return h, point_at_distance(h, SHAPE, 0.2, seed=5)


def test_counts_do_not_depend_on_batch_size() -> None:
    h, x = _setup()
    noise = GaussianNoise(0.5)
    ref = class_counts(h, noise, x, 1234, 2, 1000, seed=7, key=(3, 1))
    for batch in (1, 37, 100, 250, 5000):
        assert torch.equal(class_counts(h, noise, x, 1234, 2, batch, seed=7, key=(3, 1)), ref)
    assert int(ref.sum()) == 1234


def test_counts_depend_on_seed_and_key() -> None:
    h, x = _setup()
    noise = GaussianNoise(0.5)
    a = class_counts(h, noise, x, 5000, 2, 1000, seed=7, key=(3, 1))
    assert not torch.equal(a, class_counts(h, noise, x, 5000, 2, 1000, seed=8, key=(3, 1)))
    assert not torch.equal(a, class_counts(h, noise, x, 5000, 2, 1000, seed=7, key=(4, 1)))


def test_class_frequency_matches_exact_probability() -> None:
    h, x = _setup()
    for sigma in (0.1, 0.4, 1.0):
        n = 40_000
        p = h.gaussian_p1(x, sigma)
        c = class_counts(h, GaussianNoise(sigma), x, n, 2, 4000, seed=1, key=(0, 0))
        assert abs(int(c[1]) / n - p) < 4.5 * (p * (1 - p) / n) ** 0.5


def test_noise_moments() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.full((3, 4, 4), 0.5)
    s = GaussianNoise(0.3).sample(x, 20_000, g)
    assert s.shape == (20_000, 3, 4, 4)
    eps = (s - x).flatten()
    assert abs(float(eps.mean())) < 0.003 and abs(float(eps.std()) - 0.3) < 0.003


def test_channels_last_gives_the_same_counts() -> None:
    from rsbench.data.registry import DatasetSpec
    from rsbench.models import build_model

    spec = DatasetSpec("m", "mnist", (1, 28, 28), 10, (0.1,), (0.3,))
    torch.manual_seed(0)
    model = build_model("cnn", spec).eval()
    x = torch.rand(spec.shape)
    ref = class_counts(model, GaussianNoise(0.5), x, 600, 10, 200, 0, (1,))
    cl = model.to(memory_format=torch.channels_last)
    assert torch.equal(class_counts(cl, GaussianNoise(0.5), x, 600, 10, 200, 0, (1,), channels_last=True), ref)


def test_in_place_normalisation_gives_the_same_outputs_and_counts() -> None:
    from rsbench.data.registry import DatasetSpec
    from rsbench.models import build_model

    spec = DatasetSpec("c", "cifar10", (3, 8, 8), 10, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3))
    torch.manual_seed(0)
    model = build_model("cnn", spec).eval()
    batch = torch.rand(50, *spec.shape)
    with torch.inference_mode():
        assert torch.equal(model.forward_inplace(batch.clone()), model(batch))

    class Plain(torch.nn.Module):  # no forward_inplace: the sampler calls the model as is
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)

    x = torch.rand(spec.shape)
    ref = class_counts(Plain(model), GaussianNoise(0.5), x, 700, 10, 300, 0, (2,))
    assert torch.equal(class_counts(model, GaussianNoise(0.5), x, 700, 10, 300, 0, (2,)), ref)


def test_soft_sums_are_the_same_bit_for_bit_for_any_batch_and_company() -> None:
    """Soft smoothing's float64 score sums: one sum per seeded block, added in block order, so neither the forward
    batch (the CLI's batch=auto picks it by timing, always whole blocks) nor other points in the batch change the
    last bit. (A batch below one block splits a block over several forward passes, which a float32 network may
    round differently, as any network may for another batch size.)"""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 32), torch.nn.Tanh(), torch.nn.Linear(32, 5))
    x, others = torch.rand(3, 2, 2), [torch.rand(3, 2, 2) for _ in range(2)]
    noise = GaussianNoise(0.5)
    for squares in (False, True):
        sums = [class_counts(model, noise, x, 1050, 5, batch, 7, (4, 1), temperature=1.0, squares=squares)
                for batch in (100, 200, 250, 1000, 4000)]
        assert all(torch.equal(s, sums[0]) for s in sums), [s - sums[0] for s in sums]
        together = class_counts_many(model, noise, [*others[:1], x, *others[1:]], [(9, 1), (4, 1), (5, 1)], 1050, 5,
                                     700, 7, temperature=1.0, squares=squares)
        assert torch.equal(together[1], sums[0])


@pytest.mark.parametrize("method", [["method.smoothing=soft", "method.p_min=1e-7"], ["method=idrs", *IDRS_SMALL]])
def test_a_point_certified_alone_is_the_same_row_inside_a_larger_selection(tmp_path, tiny_model, method) -> None:
    """The same command gives the same CSV: a point's soft-smoothing row (float64 sums of scores) is bit for bit the
    same alone (one point, batch 100) and among others (every 25th point, batch 400, two points per batch)."""
    base = [*TINY_TRAIN, f"model.checkpoint={tiny_model}", "certify.n0=20", "certify.n=1000", "certify.alpha=0.01",
            *method]
    run_cli(["certify", *base, "certify.max=1", "certify.batch=100", f"hydra.run.dir={tmp_path / 'alone'}"], tmp_path)
    run_cli(["certify", *base, "certify.skip=25", "certify.max=200", "certify.batch=400", "certify.points_per_batch=2",
             f"hydra.run.dir={tmp_path / 'many'}"], tmp_path)
    alone, many = (read_rows(tmp_path / r / "certify.csv") for r in ("alone", "many"))
    assert len(alone) == 1 and len(many) == 8
    pd.testing.assert_frame_equal(alone, many[many["idx"] == 0].reset_index(drop=True))
