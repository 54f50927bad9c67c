"""Training objectives (train.objective): each loss against a value worked out by hand, gradients by finite
differences, each objective trained end to end and resumed, and the CLI's choice of objective."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import pytest
import torch
from torch import nn

from conftest import run_cli
from rsbench.data.registry import TensorImages
from rsbench.errors import RsbenchError
from rsbench.training import loop
from rsbench.training.losses import make_loss
from rsbench.training.objectives import (
    OBJECTIVES,
    StepContext,
    TrainingNoise,
    check_objective,
    make_objective,
    smoothmix_path,
)

LN2 = math.log(2.0)


@dataclass(frozen=True)
class FixedNoise:
    """Noise whose draws are given: deltas[:m] for every call (a hand-computable case)."""

    draws: torch.Tensor  # (m_max, B, ...)
    sigma: float = 0.5

    def deltas(self, x: torch.Tensor, m: int, generator: torch.Generator) -> torch.Tensor:
        return self.draws[:m].to(x.dtype)


class Identity(nn.Module):
    """logits = input: the objective's value on chosen logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _step(draws, epoch: int = 1, sigma: float = 0.5, seed: int = 0) -> StepContext:
    gens = {"noise": torch.Generator().manual_seed(seed), "attack": torch.Generator().manual_seed(seed + 1)}
    return StepContext(FixedNoise(torch.as_tensor(draws, dtype=torch.float64), sigma), gens, epoch,
                       make_loss(None))


def _run(name: str, model, x, y, step, **params) -> float:
    return float(make_objective({"name": name, **params})(model, x, y, step)[0].detach())


def test_consistency_by_hand() -> None:
    """Logits [ln 2, 0] and [0, 0]: p1 = (2/3, 1/3), p2 = (1/2, 1/2), p_bar = (7/12, 5/12)."""
    x, y = torch.zeros(1, 2, dtype=torch.float64), torch.tensor([0])
    draws = [[[LN2, 0.0]], [[0.0, 0.0]]]
    ce = (math.log(3 / 2) + math.log(2)) / 2
    kl1 = 7 / 12 * math.log((7 / 12) / (2 / 3)) + 5 / 12 * math.log((5 / 12) / (1 / 3))
    kl2 = 7 / 12 * math.log((7 / 12) / (1 / 2)) + 5 / 12 * math.log((5 / 12) / (1 / 2))
    entropy = -(7 / 12 * math.log(7 / 12) + 5 / 12 * math.log(5 / 12))
    want = ce + 10 * (kl1 + kl2) / 2 + 0.5 * entropy
    assert _run("consistency", Identity(), x, y, _step(draws), m=2, lbd=10.0, eta=0.5) == pytest.approx(want, 1e-9)
    # each term is there: without the KL term or the entropy term the value differs by exactly that term
    assert _run("consistency", Identity(), x, y, _step(draws), m=2, lbd=0.0, eta=0.5) == \
        pytest.approx(want - 10 * (kl1 + kl2) / 2, 1e-9)
    assert _run("consistency", Identity(), x, y, _step(draws), m=2, lbd=10.0, eta=0.0) == \
        pytest.approx(want - 0.5 * entropy, 1e-9)


def test_stability_by_hand() -> None:
    """Clean logits [ln 2, 0] -> (2/3, 1/3); noisy [0, 0] -> (1/2, 1/2)."""
    x, y = torch.tensor([[LN2, 0.0]], dtype=torch.float64), torch.tensor([0])
    kl = 2 / 3 * math.log((2 / 3) / (1 / 2)) + 1 / 3 * math.log((1 / 3) / (1 / 2))
    want = math.log(3 / 2) + 2.0 * kl
    assert _run("stability", Identity(), x, y, _step([[[-LN2, 0.0]]]), gamma=2.0) == pytest.approx(want, 1e-9)


def test_macer_by_hand() -> None:
    """Two copies with logits [1, 0] and [0, 0]; point 0 (label 0) is classified correctly and gets the hinge,
    point 1 (label 1) is not and gets only the classification term."""
    x, y = torch.zeros(2, 2, dtype=torch.float64), torch.tensor([0, 1])
    draws = [[[1.0, 0.0], [1.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]]
    e = math.e
    z0 = (e / (e + 1) + 0.5) / 2  # soft smoothed probability of class 0 (beta = 1)
    classification = (-math.log(z0 + 1e-10) - math.log(1 - z0 + 1e-10)) / 2
    xi = NormalDist().inv_cdf(z0) - NormalDist().inv_cdf(1 - z0)
    gamma, lbd, sigma = 8.0, 2.0, 0.5
    hinge = lbd * sigma / 2 * (gamma - xi) / 2  # summed over the one active point, divided by the batch
    params = dict(m=2, beta=1.0, gamma=gamma, lbd=lbd, deferred_epochs=0)
    assert _run("macer", Identity(), x, y, _step(draws, sigma=sigma), **params) == \
        pytest.approx(classification + hinge, 1e-9)
    # deferred: no hinge up to that epoch, the hinge after it; a margin below xi switches the hinge off
    assert _run("macer", Identity(), x, y, _step(draws, epoch=3), **{**params, "deferred_epochs": 3}) == \
        pytest.approx(classification, 1e-9)
    assert _run("macer", Identity(), x, y, _step(draws, epoch=4), **{**params, "deferred_epochs": 3}) == \
        pytest.approx(classification + hinge, 1e-9)
    assert _run("macer", Identity(), x, y, _step(draws), **{**params, "gamma": xi / 2}) == \
        pytest.approx(classification, 1e-9)


class Linear2(nn.Module):
    """Two-class logits (w.x, -w.x) on 2-d inputs: the attack's direction is -w for label 0."""

    def __init__(self, w) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1) @ self.w
        return torch.stack([s, -s], 1)


def test_smoothadv_attacks_to_the_warmed_up_radius_and_trains_there() -> None:
    """With w = (1, 0), label 0, no random start, PGD on the smoothed loss walks -w to the ball's edge:
    x' = x - eps_t w; eps_t = eps epoch / warmup (epoch 5 of 10: half). The loss is CE at x' + delta_i."""
    model = Linear2([1.0, 0.0])
    x, y = torch.tensor([[0.6, 0.5]], dtype=torch.float64), torch.tensor([0])
    draws = [[[0.1, 0.0]], [[-0.1, 0.0]]]
    eps_t = 0.4 * 5 / 10
    s = [0.6 - eps_t + 0.1, 0.6 - eps_t - 0.1]  # w.(x' + delta_i)
    want = sum(math.log(1 + math.exp(-2 * v)) for v in s) / 2  # CE of logits (v, -v) at label 0
    got = _run("smoothadv", model, x, y, _step(draws, epoch=5), eps=0.4, steps=5, m=2, warmup_epochs=10,
               random_start=False, attack="pgd", ddn_gamma=0.05)
    assert got == pytest.approx(want, 1e-9)
    after = _run("smoothadv", model, x, y, _step(draws, epoch=12), eps=0.4, steps=5, m=2, warmup_epochs=10,
                 random_start=False, attack="pgd", ddn_gamma=0.05)
    assert after == pytest.approx(sum(math.log(1 + math.exp(-2 * v)) for v in (0.6 - 0.4 + 0.1, 0.6 - 0.4 - 0.1)) / 2)


class Halfspace(nn.Module):
    """Two-class logits (k s, -k s), s = x_0 - 0.3, k = 20: the boundary x_0 = 0.3."""

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        s = 20.0 * (t.flatten(1)[:, 0] - 0.3)
        return torch.stack([s, -s], 1)


def test_ddn_finds_the_smallest_adversary_of_the_smoothed_halfspace_within_its_bound() -> None:
    """Logits (k s, -k s), s = w.x - b: the smoothed classifier (noise symmetric about 0, draws +-0.05 along w)
    flips exactly where s = 0, at distance 0.3 from x along -w. DDN's best adversary lies just past it (its
    norm shrinks by gamma after each success); under a bound of 0.2 it is projected onto the ball, as SmoothAdv
    renormalises it: x - 0.2 w, still classified correctly."""
    from rsbench.attacks.smoothed import smoothed_ddn

    x, y = torch.tensor([[0.6, 0.5]], dtype=torch.float64), torch.tensor([0])
    noises = torch.tensor([[[0.05, 0.0]], [[-0.05, 0.0]]], dtype=torch.float64)
    adv = smoothed_ddn(Halfspace(), x, y, noises, max_norm=1.0, steps=60, gamma=0.05, init_norm=1.0, levels=None)
    dist = float((adv - x).norm())
    assert 0.3 <= dist <= 0.3 * 1.1 and float(adv[0, 0]) < 0.3      # past the boundary, at most 10 % beyond
    assert abs(float(adv[0, 1] - x[0, 1])) < 0.02                      # along -w
    bounded = smoothed_ddn(Halfspace(), x, y, noises, max_norm=0.2, steps=60, gamma=0.05, levels=None)
    assert torch.allclose(bounded, x - torch.tensor([[0.2, 0.0]], dtype=torch.float64), atol=0.02)
    assert float((bounded - x).norm()) <= 0.2 + 1e-12


def test_smoothadv_with_ddn_trains_on_the_adversary() -> None:
    """attack=ddn: the loss is CE at DDN's adversary, just past the boundary at distance 0.1 (CE a little above
    ln 2); PGD at the same bound walks to x_0 = 0 (CE about 6)."""
    model = Halfspace()
    x, y = torch.tensor([[0.4, 0.5]], dtype=torch.float64), torch.tensor([0])
    draws = [[[0.0, 0.0]], [[0.0, 0.0]]]
    clean = _run("smoothadv", model, x, y, _step(draws, epoch=1), eps=1.0, steps=40, m=2, warmup_epochs=0,
                 random_start=False, attack="pgd", ddn_gamma=0.05)
    ddn = _run("smoothadv", model, x, y, _step(draws, epoch=1), eps=1.0, steps=40, m=2, warmup_epochs=0,
               random_start=False, attack="ddn", ddn_gamma=0.05)
    assert math.log(2) < ddn < 2.0 < clean
    with pytest.raises(RsbenchError, match="train.objective.attack='fgsm' is invalid; valid values: pgd, ddn"):
        check_objective({"name": "smoothadv", **{**DEFAULTS["smoothadv"], "attack": "fgsm"}})


def test_smoothmix_path_and_loss_by_hand() -> None:
    """The path walks alpha per step along -w (x_T = x - T alpha w), the one-step adversary is bounded by its
    norm; the loss is CE + eta w KL(y_mix || q) on the correctly classified points, with lambda ~ U[0, 1/2]."""
    model = Linear2([1.0, 0.0])
    x, y = torch.tensor([[0.8, 0.5]], dtype=torch.float64), torch.tensor([0])
    deltas = torch.tensor([[[0.05, 0.0]], [[-0.05, 0.0]]], dtype=torch.float64)
    x0, xt = smoothmix_path(model, x, y, deltas, steps=3, alpha=0.1, mix_step=0, max_norm=None, start_norm=0.0)
    assert torch.allclose(x0, x) and torch.allclose(xt, torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    x0, _ = smoothmix_path(model, x, y, deltas, steps=3, alpha=0.1, mix_step=1, max_norm=None, start_norm=0.05)
    assert torch.allclose(x0, torch.tensor([[0.75, 0.5]], dtype=torch.float64))
    step = _step(deltas, epoch=5, seed=3)
    lam = float(torch.rand(1, generator=torch.Generator().manual_seed(3), dtype=torch.float64)) / 2

    def probs(v: float) -> tuple[float, float]:
        p = 1 / (1 + math.exp(-2 * v))
        return p, 1 - p

    clean = [probs(0.8 + d) for d in (0.05, -0.05)]
    ce = sum(-math.log(p[0]) for p in clean) / 2
    p_bar = [(clean[0][c] + clean[1][c]) / 2 for c in range(2)]
    y_mix = [(1 - lam) * p_bar[c] + lam / 2 for c in range(2)]
    x_mix = (1 - lam) * 0.8 + lam * 0.5
    q = [probs(x_mix + d) for d in (0.05, -0.05)]
    kl = sum(sum(y_mix[c] * (math.log(y_mix[c]) - math.log(qi[c])) for c in range(2)) for qi in q) / 2
    w = 5 / 10
    got = _run("smoothmix", model, x, y, step, m=2, steps=3, alpha=0.1, eta=2.0, mix_step=0, max_norm=None,
               warmup_epochs=10)
    assert got == pytest.approx(ce + 2.0 * w * kl, 1e-9)
    # a misclassified point (label 1 here) gets no mixup term
    wrong = _run("smoothmix", model, x, torch.tensor([1]), _step(deltas, epoch=5, seed=3), m=2, steps=3,
                 alpha=0.1, eta=2.0, mix_step=0, max_norm=None, warmup_epochs=10)
    assert wrong == pytest.approx(sum(-math.log(p[1]) for p in clean) / 2, 1e-9)


@pytest.mark.parametrize("name,params", [
    ("consistency", dict(m=2, lbd=10.0, eta=0.5)),
    ("stability", dict(gamma=2.0)),
    ("macer", dict(m=2, beta=1.0, gamma=8.0, lbd=2.0, deferred_epochs=0)),
])
def test_gradients_match_finite_differences(name, params) -> None:
    """(SmoothAdv and SmoothMix are left out: their adversarial points depend on the weights but are held fixed
    in the gradient, as in the authors' training, so finite differences of the whole loss do not match it.)"""
    torch.manual_seed(0)
    x = torch.rand(3, 4, dtype=torch.float64)
    y = torch.tensor([0, 1, 2])
    draws = 0.3 * torch.randn(2, 3, 4, dtype=torch.float64)
    weight = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)

    def value(w: torch.Tensor) -> torch.Tensor:
        model = _Matmul(w)
        return make_objective({"name": name, **params})(model, x, y, _step(draws, seed=1))[0]

    assert torch.autograd.gradcheck(value, (weight,), eps=1e-6, atol=1e-5)


class _Matmul(nn.Module):
    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w


def test_training_noise_keeps_the_loops_draw_and_draws_mixtures() -> None:
    x = torch.rand(5, 1, 4, 4)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    one = TrainingNoise(0.25).deltas(x, 1, g1)[0]
    assert torch.equal(x + one, x + 0.25 * torch.randn(x.shape, generator=g2))  # the draw before objectives
    many = TrainingNoise(0.5, (0.25, 1.0)).deltas(torch.zeros(4000, 1, 16, 16), 1, torch.Generator().manual_seed(0))
    per_draw = many[0].flatten(1).std(1)
    # every draw comes from one component: half near 0.25, half near 1.0
    assert 0.4 < float((per_draw < 0.6).double().mean()) < 0.6
    with pytest.raises(RsbenchError, match="sigma"):
        TrainingNoise(0.5, (0.25, -1.0))


def _tiny() -> tuple[TensorImages, TensorImages]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(96, 1, 6, 6, generator=g)
    y = (x.mean((1, 2, 3)) > 0.5).long() + 2 * (x[:, 0, 0, 0] > 0.5).long()
    return TensorImages(x[:64], y[:64]), TensorImages(x[64:], y[64:])


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 16), nn.ReLU(), nn.Linear(16, 4))


DEFAULTS = {
    "smoothadv": dict(eps=0.5, steps=2, m=2, warmup_epochs=2, random_start=True, attack="pgd", ddn_gamma=0.05),
    "consistency": dict(m=2, lbd=10.0, eta=0.5),
    "stability": dict(gamma=2.0),
    "macer": dict(m=4, beta=16.0, gamma=8.0, lbd=16.0, deferred_epochs=1),
    "smoothmix": dict(m=2, steps=2, alpha=0.5, eta=5.0, mix_step=1, max_norm=None, warmup_epochs=2),
    "gaussian": {},
}


def _train(name: str, state, epochs: int = 3, mixture=None) -> dict[str, torch.Tensor]:
    train, test = _tiny()
    tc = loop.TrainConfig(epochs=epochs, batch_size=16, optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=0.0,
                          schedule="constant", step_size=1, gamma=1.0,
                          objective={"name": name, **DEFAULTS[name]}, noise_mixture=mixture)
    net = _net()
    loop.train_model(net, train, test, tc, 0.25, 0, torch.device("cpu"), state_path=state)
    return {k: v.clone() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_each_objective_trains_and_resumes_to_the_same_weights(name, tmp_path, monkeypatch) -> None:
    reference = _train(name, None)
    saved = loop.save_train_state

    def save_then_stop(path, *args, **kwargs):
        saved(path, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_train_state", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        _train(name, tmp_path / "state.pt")
    monkeypatch.undo()
    resumed = _train(name, tmp_path / "state.pt")
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)
    start = _net().state_dict()
    assert any(not torch.equal(start[k], resumed[k]) for k in start)  # it trained


def test_objectives_train_with_mixture_noise() -> None:
    a = _train("consistency", None, epochs=1, mixture=[0.25, 0.5])
    b = _train("consistency", None, epochs=1)
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_bad_objective_settings_say_what_is_wrong() -> None:
    with pytest.raises(RsbenchError, match=r"takes parameters \['m', 'lbd', 'eta'\]"):
        check_objective({"name": "consistency", "m": 2})
    with pytest.raises(RsbenchError, match="unknown objective 'mace'; valid objectives: consistency, gaussian"):
        check_objective({"name": "mace"})
    with pytest.raises(RsbenchError, match="m=0 is invalid"):
        check_objective({"name": "consistency", "m": 0, "lbd": 1.0, "eta": 0.5})
    with pytest.raises(RsbenchError, match="mix_step=2 must lie in"):
        check_objective({"name": "smoothmix", **{**DEFAULTS["smoothmix"], "mix_step": 2}})
    for name, key, value in (("macer", "beta", 0), ("macer", "beta", -1.0), ("smoothmix", "max_norm", -1),
                             ("smoothmix", "max_norm", 0.0)):
        with pytest.raises(RsbenchError, match=f"train.objective.{key}={value!r} is invalid: it must be a number > 0"):
            check_objective({"name": name, **{**DEFAULTS[name], key: value}})
    assert check_objective({"name": "smoothmix", **{**DEFAULTS["smoothmix"], "max_norm": None}})["max_norm"] is None
    base = dict(epochs=1, batch_size=8, optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.0, schedule="constant",
                step_size=1, gamma=1.0)
    with pytest.raises(RsbenchError, match="train.loss and train.warm_start apply to train.objective=gaussian"):
        loop.TrainConfig.from_cfg({**base, "objective": {"name": "stability", "gamma": 1.0},
                                   "loss": {"name": "mh", "d": 1.0}})
    with pytest.raises(RsbenchError, match="has its own: use one of them"):
        loop.TrainConfig.from_cfg({**base, "objective": {"name": "stability", "gamma": 1.0},
                                   "attack": {"name": "pgd_l2", "eps": 1.0, "steps": 1, "step_size": 1.0}})
    assert set(OBJECTIVES) == set(DEFAULTS)


def test_nonsense_objective_settings_train_nothing(tmp_path, capsys) -> None:
    for override in ("train.objective.beta=0", "train.objective.max_norm=-1"):
        objective = "macer" if "beta" in override else "smoothmix"
        run = tmp_path / objective
        with pytest.raises(SystemExit) as exit_:
            run_cli(["train", f"train.objective={objective}", override, "model=mlp", "model.params.widths=[16]",
                     "train.epochs=1", "train.max_examples=64", f"hydra.run.dir={run}"], tmp_path)
        assert exit_.value.code == 2 and "is invalid" in capsys.readouterr().err
        assert not (run / "model.pt").exists()


def test_cli_trains_an_objective_and_records_it(tmp_path) -> None:
    """`train.objective=NAME` (the group chosen by value) and a hyperparameter override, end to end."""
    run = tmp_path / "run"
    run_cli(["train", "train.objective=consistency", "train.objective.lbd=5", "model=mlp", "model.params.widths=[16]",
             "train.epochs=1", "train.max_examples=64", f"hydra.run.dir={run}"], tmp_path)
    meta = torch.load(run / "model.pt", weights_only=True)["meta"]
    assert meta["train_objective"] == {"name": "consistency", "m": 2, "lbd": 5, "eta": 0.5}
    default = tmp_path / "default"
    run_cli(["train", "model=mlp", "model.params.widths=[16]", "train.epochs=1", "train.max_examples=64",
             f"hydra.run.dir={default}"], tmp_path)
    assert torch.load(default / "model.pt", weights_only=True)["meta"]["train_objective"] is None
