"""Training objectives by name (``train.objective``): the field's ways of training a base model for smoothing.

Notation: f the base model (logits), x a clean training batch, y its labels, delta_1..delta_m noise draws
(Gaussian at train.noise_sigma, or a mixture of Gaussians with ``train.noise_mixture``), p_i =
softmax(f(x + delta_i)) and p_bar = (1/m) sum_i p_i (the soft smoothed classifier), CE cross-entropy,
KL(p || q) = sum_c p_c (log p_c - log q_c), H(p) = -sum_c p_c log p_c. Batch means throughout.

    gaussian     Cohen et al. 2019: L = loss(f(x + delta), y) (train.loss, CE by default), one draw per image.
    stability    Li et al. 2019 (stability training): L = CE(f(x), y) + gamma KL(softmax f(x) || p_1).
    consistency  Jeong & Shin 2020, eq. (8): L = (1/m) sum_i CE(f(x + delta_i), y)
                 + lbd (1/m) sum_i KL(p_bar || p_i) + eta H(p_bar).
    macer        Zhai et al. 2020, Alg. 1: L = -log p_bar_y + lbd (sigma / 2) max(0, gamma - xi) on the
                 correctly classified points with xi <= gamma, xi = Phi^-1(z_top1) - Phi^-1(z_top2), z the soft
                 smoothed classifier of beta f (inverse temperature beta); lbd = 0 for the first deferred epochs.
    smoothadv    Salman et al. 2019: x' = SmoothAdv's PGD on -log p_bar_y(x') with the m draws fixed
                 (rsbench.attacks.smoothed), ||x' - x||_2 <= eps_t, eps_t = eps min(1, epoch / warmup), or
                 DDN (attack=ddn: the smallest adversary of p_bar within eps_t, started at norm eps_t);
                 L = (1/m) sum_i CE(f(x' + delta_i), y).
    smoothmix    Jeong et al. 2021, eq. (7)-(9): x_T after T normalised-gradient steps (step alpha) up
                 -log p_bar_y, x_0 the clean side (x, or the one-step adversary with mix_step = 1),
                 lambda ~ U[0, 1/2] per image, x_mix = (1 - lambda) x_0 + lambda x_T,
                 y_mix = (1 - lambda) p_bar(x) + lambda / C (the confidence term: adversaries get the uniform
                 label), L = (1/m) sum_i CE(f(x + delta_i), y)
                 + eta w (1/m) sum_i 1[argmax p_bar(x) = y] KL(y_mix || softmax f(x_mix + delta_i)),
                 w = min(1, epoch / warmup) (it also scales the one-step adversary's norm bound).

Every objective returns (loss, logits of the first noisy copy) for the training log. Each reads its noise
from the training's seeded noise generator and its attack's random start from the attack generator, so an
objective's training is as reproducible and resumable as any. The paper defaults are in
conf/train/objective/*.yaml; where a paper is silent the authors' public code decided (named there).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsbench.attacks.l2 import _per_example_norm, l2_pgd, project_l2
from rsbench.attacks.smoothed import smoothed_ddn, smoothed_nll
from rsbench.errors import RsbenchError, require
from rsbench.models.registry import frozen_parameters
from rsbench.noise.mixture import GaussianMixtureNoise
from rsbench.registry import Registry

ObjectiveFn = Callable[..., tuple[Tensor, Tensor]]
OBJECTIVES: Registry[ObjectiveFn] = Registry("objective")


@dataclass(frozen=True)
class TrainingNoise:
    """Training noise: N(0, sigma^2 I), or with ``mixture`` a uniform mixture of N(0, s^2 I), s in mixture."""

    sigma: float
    mixture: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.mixture is not None:
            GaussianMixtureNoise(self.mixture, (1.0 / len(self.mixture),) * len(self.mixture))  # checks them

    def deltas(self, x: Tensor, m: int, generator: torch.Generator) -> Tensor:
        """m noise draws per image of x: shape (m, *x.shape). With one Gaussian draw this is exactly the
        draw the training loop has always made (sigma * randn(x.shape)), so objective=gaussian keeps its rows."""
        if self.mixture is None:
            if self.sigma == 0:
                return torch.zeros((m, *x.shape), device=x.device, dtype=x.dtype)
            shape = x.shape if m == 1 else (m, *x.shape)
            return (self.sigma * torch.randn(shape, generator=generator, device=x.device)).view(m, *x.shape)
        noise = GaussianMixtureNoise(self.mixture, (1.0 / len(self.mixture),) * len(self.mixture))
        s = noise.scales(m * len(x), generator, x.device, x.dtype).view(m, len(x), *([1] * (x.dim() - 1)))
        return s * torch.randn((m, *x.shape), generator=generator, device=x.device, dtype=x.dtype)


@dataclass(frozen=True)
class StepContext:
    """What an objective needs for one step besides (model, x, y)."""

    noise: TrainingNoise
    generators: dict[str, torch.Generator]  # the loop's seeded generators: "noise", "attack", ...
    epoch: int                             # 1-based epoch of this step
    loss: Callable[[nn.Module, Tensor, Tensor], tuple[Tensor, Tensor]]  # train.loss (objective=gaussian)
    layout: Callable[[Tensor], Tensor] = lambda t: t  # the training memory format for model inputs

    def deltas(self, x: Tensor, m: int) -> Tensor:
        return self.noise.deltas(x, m, self.generators["noise"])

    def logits(self, model: nn.Module, x: Tensor, deltas: Tensor) -> Tensor:
        """f(x + deltas[i]) for every draw i: shape (m, B, C)."""
        m = len(deltas)
        return model(self.layout((x.unsqueeze(0) + deltas).flatten(0, 1))).view(m, len(x), -1)


def _kl(p: Tensor, log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p || q) = sum_c p_c (log p_c - log q_c) over the last dimension."""
    return (p * (log_p - log_q)).sum(-1)


def _log(p: Tensor) -> Tensor:
    return p.clamp_min(1e-20).log()


@OBJECTIVES.register("gaussian")
def gaussian(model: nn.Module, x: Tensor, y: Tensor, step: StepContext) -> tuple[Tensor, Tensor]:
    return step.loss(model, step.layout(x + step.deltas(x, 1)[0]), y)


@OBJECTIVES.register("stability")
def stability(model: nn.Module, x: Tensor, y: Tensor, step: StepContext, gamma: float) -> tuple[Tensor, Tensor]:
    clean = model(step.layout(x))
    noisy = step.logits(model, x, step.deltas(x, 1))[0]
    log_p = clean.log_softmax(1)
    kl = _kl(log_p.exp(), log_p, noisy.log_softmax(1)).mean()
    return F.cross_entropy(clean, y) + gamma * kl, noisy


@OBJECTIVES.register("consistency")
def consistency(model: nn.Module, x: Tensor, y: Tensor, step: StepContext, m: int, lbd: float,
                eta: float) -> tuple[Tensor, Tensor]:
    logits = step.logits(model, x, step.deltas(x, m))
    log_p = logits.log_softmax(2)
    p_bar = log_p.exp().mean(0)
    ce = F.nll_loss(log_p.flatten(0, 1), y.repeat(m))
    kl = _kl(p_bar, _log(p_bar), log_p).mean()  # (1/m) sum_i mean_b KL(p_bar || p_i)
    entropy = -(p_bar * _log(p_bar)).sum(1).mean()
    return ce + lbd * kl + eta * entropy, logits[0]


@OBJECTIVES.register("macer")
def macer(model: nn.Module, x: Tensor, y: Tensor, step: StepContext, m: int, beta: float, gamma: float,
          lbd: float, deferred_epochs: int) -> tuple[Tensor, Tensor]:
    logits = step.logits(model, x, step.deltas(x, m))
    classification = F.nll_loss((logits.softmax(2).mean(0) + 1e-10).log(), y)
    if lbd == 0 or step.epoch <= deferred_epochs:
        return classification, logits[0]
    z = (beta * logits).softmax(2).mean(0)
    top = z.topk(2, dim=1)
    with torch.no_grad():  # which points the hinge is active on (finite xi, correct, xi <= gamma)
        xi = torch.special.ndtri(top.values[:, 0]) - torch.special.ndtri(top.values[:, 1])
        active = (top.indices[:, 0] == y) & torch.isfinite(xi) & (xi <= gamma)
    # recomputed on the active points only: Phi^-1 at z = 1 has an infinite gradient even where it is masked
    v = top.values[active]
    xi = torch.special.ndtri(v[:, 0]) - torch.special.ndtri(v[:, 1])
    robustness = (gamma - xi).sum() * step.noise.sigma / 2 / len(x)
    return classification + lbd * robustness, logits[0]


@OBJECTIVES.register("smoothadv")
def smoothadv(model: nn.Module, x: Tensor, y: Tensor, step: StepContext, eps: float, steps: int, m: int,
              warmup_epochs: int, random_start: bool, attack: str, ddn_gamma: float) -> tuple[Tensor, Tensor]:
    eps_t = eps * min(1.0, step.epoch / warmup_epochs) if warmup_epochs > 0 else eps
    deltas = step.deltas(x, m)
    training = model.training
    model.eval()  # the authors attack with batch-norm statistics frozen
    if attack == "ddn":  # the norm bound and DDN's starting norm both warm up (SmoothAdv's train_pgd.py)
        x_adv = smoothed_ddn(model, x, y, deltas, eps_t, steps, ddn_gamma, init_norm=eps_t)
    else:
        x_adv = l2_pgd(model, x, y, eps_t, steps, 2 * eps_t / steps, random_start, step.generators["attack"],
                       loss=smoothed_nll(model, deltas, y))
    model.train(training)
    logits = step.logits(model, x_adv, deltas)
    return F.cross_entropy(logits.flatten(0, 1), y.repeat(m)), logits[0]


def smoothmix_path(model: nn.Module, x: Tensor, y: Tensor, deltas: Tensor, steps: int, alpha: float,
                   mix_step: int, max_norm: float | None, start_norm: float) -> tuple[Tensor, Tensor]:
    """SmoothMix's adversarial path: (x_0, x_T). Each step x <- clip(Proj(x + alpha g / ||g||_2)), g the
    gradient of -log p_bar_y; Proj onto ||x - x_clean||_2 <= max_norm (none if None), clip to [0, 1]. x_0 is
    the point after ``mix_step`` steps, projected onto the ball of radius ``start_norm``."""
    def project(t: Tensor, radius: float | None) -> Tensor:
        t = t if radius is None else x + project_l2(t - x, radius)
        return t.clamp(0.0, 1.0).detach()

    adv, start = x.detach(), x.detach()
    with frozen_parameters(model):
        for t in range(steps):
            if t == mix_step:
                start = adv
            adv = adv.detach().requires_grad_(True)
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(smoothed_nll(model, deltas, y)(adv), adv)
            adv = project(adv + alpha * grad / (_per_example_norm(grad) + 1e-8), max_norm)
    return project(start, start_norm), adv.detach()


@OBJECTIVES.register("smoothmix")
def smoothmix(model: nn.Module, x: Tensor, y: Tensor, step: StepContext, m: int, steps: int, alpha: float,
              eta: float, mix_step: int, max_norm: float | None, warmup_epochs: int) -> tuple[Tensor, Tensor]:
    w = min(1.0, step.epoch / warmup_epochs) if warmup_epochs > 0 else 1.0
    deltas = step.deltas(x, m)
    training = model.training
    model.eval()
    x0, x_adv = smoothmix_path(model, x, y, deltas, steps, alpha, mix_step, max_norm, w * alpha * mix_step)
    model.train(training)
    logits = step.logits(model, x, deltas)
    ce = F.cross_entropy(logits.flatten(0, 1), y.repeat(m))
    p_bar = logits.softmax(2).mean(0)  # a target that keeps its gradient, as in the authors' code
    lam = torch.rand(len(x), generator=step.generators["noise"], device=x.device, dtype=x.dtype) / 2
    shape = (-1, *([1] * (x.dim() - 1)))
    x_mix = (1 - lam).view(shape) * x0 + lam.view(shape) * x_adv
    y_mix = (1 - lam).view(-1, 1) * p_bar + lam.view(-1, 1) / logits.shape[2]
    log_q = step.logits(model, x_mix, deltas).log_softmax(2)
    correct = (p_bar.argmax(1) == y).to(x.dtype)
    mix = (correct * _kl(y_mix, _log(y_mix), log_q)).mean()  # mean over the m draws and the batch
    return ce + eta * w * mix, logits[0]


FIXED = ("model", "x", "y", "step")
SMOOTHADV_ATTACKS = ("pgd", "ddn")


def objective_params(name: str) -> list[str]:
    """The hyperparameters objective ``name`` takes (its config file gives each one)."""
    return [p for p in inspect.signature(OBJECTIVES.get(name)).parameters if p not in FIXED]


def check_objective(spec: dict[str, Any] | None) -> dict[str, Any]:
    """``{"name": ..., **hyperparameters}`` checked: a registered name, exactly its parameters, valid values."""
    params = dict(spec or {"name": "gaussian"})
    name = params.pop("name", "gaussian")
    wanted = objective_params(name)
    if sorted(params) != sorted(wanted):
        raise RsbenchError(f"train.objective.name={name} takes parameters {wanted}, got {sorted(params)}")
    for key in ("m", "steps"):
        if key in params:
            require(isinstance(params[key], int) and params[key] >= 1,
                    f"train.objective.{key}={params[key]!r} is invalid: it must be an integer >= 1")
    for key in ("lbd", "eta", "gamma", "eps", "alpha"):
        if key in params:
            require(_number(params[key]) and params[key] >= 0,
                    f"train.objective.{key}={params[key]!r} is invalid: it must be a number >= 0")
    for key in ("beta", "max_norm"):  # an inverse temperature, an l2 bound (max_norm: null for none)
        if key in params and not (key == "max_norm" and params[key] is None):
            require(_number(params[key]) and params[key] > 0,
                    f"train.objective.{key}={params[key]!r} is invalid: it must be a number > 0"
                    + (" (or null for no bound)" if key == "max_norm" else ""))
    if name == "smoothadv":
        require(params["attack"] in SMOOTHADV_ATTACKS, f"train.objective.attack={params['attack']!r} is invalid; "
                f"valid values: {', '.join(SMOOTHADV_ATTACKS)}")
        require(isinstance(params["ddn_gamma"], (int, float)) and 0 < params["ddn_gamma"] < 1,
                f"train.objective.ddn_gamma={params['ddn_gamma']!r} is invalid: it must lie in (0, 1)")
    if name == "smoothmix":
        require(0 <= params["mix_step"] < params["steps"],
                f"train.objective.mix_step={params['mix_step']} must lie in [0, steps = {params['steps']})")
    return {"name": name, **params}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def make_objective(spec: dict[str, Any] | None) -> Callable[[nn.Module, Tensor, Tensor, StepContext],
                                                             tuple[Tensor, Tensor]]:
    """spec -> objective(model, x, y, step) -> (loss, logits for the log)."""
    params = check_objective(spec)
    fn = OBJECTIVES.get(params.pop("name"))
    return lambda model, x, y, step: fn(model, x, y, step, **params)


def is_neutral(spec: dict[str, Any] | None) -> bool:
    """Whether ``spec`` is today's objective (Gaussian augmentation), which older runs were trained with."""
    return spec is None or dict(spec) == {"name": "gaussian"}
