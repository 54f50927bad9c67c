"""The l2 attack module: constraint, effect, and the single fast-gradient step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rsbench.attacks import l2_pgd
from rsbench.errors import RsbenchError


def _model_and_data() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    x = torch.rand(40, 1, 8, 8)
    y = model(x).argmax(1)  # attack the model's own predictions
    return model, x, y


@pytest.mark.parametrize("random_start", [True, False])
def test_pgd_stays_in_the_ball_and_the_box_and_raises_the_loss(random_start: bool) -> None:
    model, x, y = _model_and_data()
    g = torch.Generator().manual_seed(1)
    adv = l2_pgd(model, x, y, eps=0.5, steps=20, step_size=0.1, random_start=random_start, generator=g)
    assert float((adv - x).flatten(1).norm(dim=1).max()) <= 0.5 + 1e-5
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    loss = lambda t: F.cross_entropy(model(t), y, reduction="none").detach()  # noqa: E731
    assert float(loss(adv).mean()) > float(loss(x).mean())
    assert all(p.requires_grad for p in model.parameters()) and all(p.grad is None for p in model.parameters())


def test_single_step_is_the_normalised_gradient() -> None:
    model, x, y = _model_and_data()
    x = 0.25 + 0.5 * x  # away from the box, so clipping does not act
    adv = l2_pgd(model, x, y, eps=0.1, steps=1, step_size=0.1, random_start=False)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(xg), y), xg)
    expected = x + 0.1 * grad / grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    assert torch.allclose(adv, expected, atol=1e-6)


def test_steps_bounded_by_step_size_times_steps() -> None:
    """The IDRS setting (40 steps of 0.01, eps 1) moves at most 0.4 from the start."""
    model, x, y = _model_and_data()
    adv = l2_pgd(model, x, y, eps=1.0, steps=40, step_size=0.01, random_start=False)
    assert float((adv - x).flatten(1).norm(dim=1).max()) <= 0.4 + 1e-5


def test_bad_attack_parameters() -> None:
    model, x, y = _model_and_data()
    with pytest.raises(RsbenchError, match="eps"):
        l2_pgd(model, x, y, eps=0.0, steps=1, step_size=0.1)


def _halfspace_point(distance: float):
    """A halfspace on 4x4 images with w = e_0, and the all-0.5 image moved to ``distance`` on the class-1 side."""
    from halfspace import Halfspace

    w = torch.zeros(16)
    w[0] = 1.0
    model = Halfspace(w, distance - 0.5)
    return model, torch.full((1, 1, 4, 4), 0.5)


def test_smoothed_pgd_crosses_a_near_boundary() -> None:
    """At distance 0.3 from the boundary, SmoothAdv's attack with eps = 0.5 reaches the other side (the smoothed
    classifier of a halfspace is the halfspace), moving at most eps and staying in [0, 1]."""
    from rsbench.attacks import smoothed_pgd

    model, x = _halfspace_point(0.3)
    x_adv = smoothed_pgd(model, x, torch.tensor([1]), eps=0.5, sigma=0.25, m=32, steps=20,
                         generator=torch.Generator().manual_seed(0))
    assert float(model.margin(x_adv)[0]) < 0
    assert float((x_adv - x).norm()) <= 0.5 + 1e-6 and 0 <= float(x_adv.min()) and float(x_adv.max()) <= 1


@pytest.mark.parametrize("distance", [0.2, 0.5, 0.9])
def test_smoothed_pgd_never_beats_a_certified_radius(distance: float) -> None:
    """Attacked at eps = the certified radius, the point stays on its side: PREDICT there still says class 1."""
    from rsbench.attacks import smoothed_pgd
    from rsbench.certify.sampling import PointSampler
    from rsbench.methods.gaussian import GaussianSmoothing

    model, x = _halfspace_point(distance)
    method = GaussianSmoothing(0.25)
    row = method.certify(PointSampler(model, method.noise, x[0], 0, 2, 1000, seed=0), n0=100, n=2000, alpha=0.001)
    assert row["predict"] == 1 and 0 < row["radius"] <= distance
    x_adv = smoothed_pgd(model, x, torch.tensor([1]), eps=row["radius"], sigma=0.25, m=32, steps=20,
                         generator=torch.Generator().manual_seed(1))
    assert float(model.margin(x_adv)[0]) > 0
    assert method.predict(PointSampler(model, method.noise, x_adv[0], 0, 2, 1000, seed=1), 2000, 0.001)["predict"] == 1
