"""Training of base classifiers: a training objective (rsbench.training.objectives: Gaussian noise
augmentation as in Cohen et al. by default, or SmoothAdv, consistency, stability, MACER, SmoothMix) or l2-PGD
adversarial training of the base model (Madry et al.; the IDRS paper's base classifier)."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rsbench.attacks import ATTACKS, run_attack
from rsbench.cache import atomic_write
from rsbench.data.registry import TensorImages
from rsbench.errors import RsbenchError, check_count, check_positive, require
from rsbench.log import log as rslog
from rsbench.models.registry import prefers_channels_last
from rsbench.progress import progress
from rsbench.registry import Registry
from rsbench.results import ResultsCSV, format_row
from rsbench.training.augment import AUGMENTS
from rsbench.training.losses import make_loss
from rsbench.training.objectives import StepContext, TrainingNoise, check_objective, is_neutral, make_objective
from rsbench.training.optim import SraAdam
from rsbench.training.state import GENERATORS, TrainState, load_train_state, save_train_state

OPTIMIZERS: Registry = Registry("optimizer")  # (parameters, TrainConfig) -> optimizer
OPTIMIZERS.register("sgd")(lambda params, tc: torch.optim.SGD(
    params, lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay))
OPTIMIZERS.register("adam")(lambda params, tc: torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay))
# the SRA authors' Adam: normalised gradients, moment warm-up of train.warmup_steps, restarted bias correction
OPTIMIZERS.register("adam_sra")(lambda params, tc: SraAdam(params, lr=tc.lr, warmup=tc.warmup_steps))

SCHEDULES: Registry = Registry("lr schedule")  # per-epoch schedules: (optimizer, TrainConfig) -> scheduler
SCHEDULES.register("constant")(lambda opt, tc: torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0))
SCHEDULES.register("step")(lambda opt, tc: torch.optim.lr_scheduler.StepLR(opt, step_size=tc.step_size,
                                                                           gamma=tc.gamma))
SCHEDULES.register("cosine")(lambda opt, tc: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=tc.epochs))
# Loshchilov & Hutter's warm restarts (SRA App. C.5: n0 = 20 epochs, period x m = 2 after each restart)
SCHEDULES.register("cosine_restarts")(lambda opt, tc: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
    opt, T_0=tc.restart_period, T_mult=tc.restart_mult))

LOG_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "test_acc", "test_acc_noisy", "time_s", "logit_spread")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    schedule: str
    step_size: int
    gamma: float
    max_examples: int | None = None
    num_workers: int = 0
    attack: dict[str, Any] | None = None
    loss: dict[str, Any] | None = None  # {"name": sce | mh | mcr | mscr | zhen | sc_sce, **params}
    warm_start: dict[str, Any] | None = None  # {"name": mh | sce | ..., "steps": N, **params}: that loss first
    warmup_steps: int = 0     # Adam moment warm-up: first steps update m and v only (SRA App. C.5: 2000)
    restart_period: int = 20  # cosine_restarts: n0
    restart_mult: int = 2     # cosine_restarts: m
    adapt_every: int = 10     # re-tune Björck iteration counts every this many epochs (1-Lipschitz layers)
    adapt_at_start: bool = False  # also before the first step (the SRA authors' trainer; from 30 to ~1 at init)
    abort_below: dict[str, Any] | None = None  # {"epoch": 100, "test_acc": 0.30}: stop a run that is below then
    augment: str = "none"     # a name in rsbench.training.augment.AUGMENTS (train.augment=auto resolved per dataset)
    channels_last: str = "auto"  # auto: conv nets on image batches train channels-last | off
    objective: dict[str, Any] | None = None  # {"name": gaussian | smoothadv | ..., **hyperparameters}; None: gaussian
    noise_mixture: list[float] | None = None  # each draw takes its sigma uniformly from these (a MoG); None: N(0, s^2)

    def attack_params(self) -> dict[str, Any] | None:
        """The attack spec ({"name", **params}) for adversarial training; None for plain (noise) training.

        ``attack.mix`` (default 1) is the fraction of each batch replaced by its adversarial examples
        (DSmooth fine-tunes on a 50:50 mix of clean and attacked images).
        """
        a = dict(self.attack or {})
        name = a.get("name", "none")
        if name == "none":
            return None
        if name not in ATTACKS:
            raise RsbenchError(f"train.attack.name={name!r} is invalid; valid values: none, {', '.join(ATTACKS)}")
        mix = a.get("mix", 1.0)
        require(0 < mix <= 1, f"train.attack.mix={mix} must lie in (0, 1]")
        return a

    def warm_start_loss(self) -> tuple[int, Any]:
        """(steps, loss function) of ``warm_start``: the first ``steps`` optimiser steps train with that loss,
        the rest with ``loss`` (a departure from the SRA paper, which trains with one loss from the start)."""
        spec = dict(self.warm_start or {})
        steps = spec.pop("steps", None)
        require(isinstance(steps, int) and not isinstance(steps, bool) and steps > 0,
                f"train.warm_start.steps={steps!r} is invalid: give the number of steps (an integer > 0), e.g. "
                "train.warm_start={name: mh, d: 1.0, steps: 500}")
        require("name" in spec, "train.warm_start needs a loss name, e.g. "
                "train.warm_start={name: mh, d: 1.0, steps: 500}")
        return steps, make_loss(spec)

    def abort_rule(self) -> tuple[int, float]:
        """(epoch, least clean test accuracy) of ``abort_below``: the SRA authors' trainer abandons a CIFAR-10 run
        whose test accuracy is below 0.30 at epoch 100 and trains it again (ThomRC/sra trainers/trainer.py)."""
        rule = dict(self.abort_below or {})
        epoch, acc = rule.get("epoch"), rule.get("test_acc")
        require(set(rule) == {"epoch", "test_acc"} and isinstance(epoch, int) and epoch > 0
                and isinstance(acc, (int, float)) and 0 <= acc <= 1,
                f"train.abort_below={self.abort_below!r} is invalid: give {{epoch: E, test_acc: A}}, "
                "E > 0 and 0 <= A <= 1, e.g. {epoch: 100, test_acc: 0.3}")
        return epoch, float(acc)

    @classmethod
    def from_cfg(cls, cfg: dict[str, Any]) -> TrainConfig:
        tc = cls(**{k: cfg[k] for k in cls.__dataclass_fields__ if k in cfg})
        check_count("train.epochs", tc.epochs)
        check_count("train.batch_size", tc.batch_size)
        check_positive("train.lr", tc.lr)
        OPTIMIZERS.get(tc.optimizer)
        SCHEDULES.get(tc.schedule)
        require(tc.augment == "auto" or tc.augment in AUGMENTS,
                f"train.augment={tc.augment!r} is invalid; valid values: auto, {', '.join(AUGMENTS)}")
        if tc.max_examples is not None:
            check_count("train.max_examples", tc.max_examples)
        tc.attack_params()
        make_loss(tc.loss)
        if tc.abort_below is not None:
            tc.abort_rule()
        if tc.warm_start is not None:
            steps, _ = tc.warm_start_loss()
            require(steps > tc.warmup_steps, f"train.warm_start.steps={steps} ends inside the moment warm-up "
                    f"(train.warmup_steps={tc.warmup_steps}), whose steps move no weight: the warm start counts "
                    f"every step from the first, so give more than {tc.warmup_steps}")
        require(tc.optimizer != "adam_sra" or tc.weight_decay == 0,
                f"train.optimizer=adam_sra has no weight decay (the SRA authors' Adam): set train.weight_decay=0, "
                f"not {tc.weight_decay}")
        require(tc.channels_last in ("auto", "off"),
                f"train.channels_last={tc.channels_last!r} is invalid; valid values: auto, off")
        require(tc.warmup_steps >= 0, f"train.warmup_steps={tc.warmup_steps} must be >= 0")
        objective = check_objective(tc.objective)
        if objective["name"] != "gaussian":
            require(tc.attack_params() is None, f"train.attack trains on attacks of the base model; "
                    f"train.objective={objective['name']} has its own: use one of them")
            require(dict(tc.loss or {}).get("name", "sce") == "sce" and tc.warm_start is None,
                    f"train.loss and train.warm_start apply to train.objective=gaussian; {objective['name']} "
                    "defines its own loss")
        if tc.noise_mixture is not None:
            require(isinstance(tc.noise_mixture, (list, tuple)) and len(tc.noise_mixture) >= 1,
                    f"train.noise_mixture={tc.noise_mixture!r} is invalid: give a list of sigmas, e.g. [0.25, 0.5]")
            TrainingNoise(1.0, tuple(float(s) for s in tc.noise_mixture))
        return tc


def batches(ds: Dataset, batch_size: int, shuffle: bool, generator: torch.Generator | None = None,
            num_workers: int = 0, limit: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(x, y) mini-batches; in-memory datasets are sliced directly, others go through a DataLoader."""
    n = min(len(ds), limit) if limit else len(ds)
    if isinstance(ds, TensorImages):
        order = torch.randperm(len(ds), generator=generator)[:n] if shuffle else torch.arange(n)
        for lo in range(0, n, batch_size):
            idx = order[lo:lo + batch_size]
            yield ds.x[idx], ds.y[idx]
        return
    subset = torch.utils.data.Subset(ds, range(n)) if n < len(ds) else ds
    yield from DataLoader(subset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                          num_workers=num_workers)


# Below this logit spread (:func:`logit_spread`) the network has collapsed: its outputs are nearly one point.
# Why 0.01: in a 1-Lipschitz network the margin radius (o_c - o_max) / sqrt 2 of an image can differ from
# the others' by only a few spreads, so at 0.01 no image is certified more than ~0.02 beyond any other,
# below the 0.05 step of the radius curves (robustness.cr_step); rsbench's SRA CNN starts at 0.031 on
# CIFAR-10, collapsed MSCR runs measure 0.0004-0.0006, networks that learn 0.4-0.7, and a cross-entropy
# ResNet several units (docs/REPRODUCTION.md, SRA on CIFAR-10).
COLLAPSE_SPREAD = 0.01


def logit_spread(logits: torch.Tensor) -> float:
    """The mean over classes of each logit's standard deviation across images: 1/K sum_k std_i o_k(x_i)."""
    return float(logits.double().std(0, correction=0).mean()) if len(logits) > 1 else float("nan")


@torch.inference_mode()
def evaluate(model: nn.Module, ds: Dataset, sigma: float, seed: int, device: torch.device,
             batch_size: int = 500, limit: int | None = None) -> tuple[float, float]:
    """(top-1 accuracy, :func:`logit_spread`) on ``ds``, clean (sigma = 0) or under one seeded
    N(0, sigma^2 I) draw per image."""
    model.eval()
    g = torch.Generator(device=device).manual_seed(seed)
    right = total = 0
    outs = []
    for x, y in batches(ds, batch_size, shuffle=False, limit=limit):
        x, y = x.to(device), y.to(device)
        if sigma > 0:
            x = x + sigma * torch.randn(x.shape, generator=g, device=device)
        out = model(x)
        outs.append(out.float().cpu())
        right += int((out.argmax(1) == y).sum())
        total += len(y)
    return right / max(total, 1), logit_spread(torch.cat(outs)) if outs else float("nan")


def warn_collapse(spread: float, epoch: int, loss: dict[str, Any] | None) -> bool:
    """One warning line when the clean test logits' spread is below :data:`COLLAPSE_SPREAD`; True if so."""
    if not spread < COLLAPSE_SPREAD:  # NaN (one test image) never warns
        return False
    name = dict(loss or {}).get("name", "sce")
    rslog.warning("the network's outputs have collapsed (logit spread %.2g < %g after epoch %d): every image gets "
                  "nearly the same logits; with train.loss.name=%s from a random start, margins far below d make "
                  "shrinking every output lower the loss while most images are misclassified; train with "
                  "train.warm_start={name: mh, d: 1.0, steps: N} until most training images are right",
                  spread, COLLAPSE_SPREAD, epoch, name)
    return True


@contextmanager
def epoch_log(log_path: str | None, columns: tuple[str, ...], steps: int, desc: str,
              rows: list[dict[str, Any]] | None = None, done: int = 0) -> Iterator[tuple[ResultsCSV | None, Any]]:
    """(per-epoch CSV log keyed by epoch, or None; progress bar over ``steps`` batches), both closed on exit.

    The log is first rewritten to hold exactly ``rows`` (a resumed training's epochs so far, each once);
    the bar starts at ``done`` batches.
    """
    log = ResultsCSV(log_path, columns, key="epoch") if log_path else None
    if log:
        # rows from an older training state may lack a column added since (logit_spread): left empty
        text = ",".join(columns) + "\n" + "".join(format_row({c: "" for c in columns} | r, columns) for r in rows or [])
        atomic_write(log.path, lambda p: p.write_text(text))
        log.open()
    bar = progress(total=steps, desc=desc, unit="batch", initial=done)
    try:
        yield log, bar
    finally:
        bar.close()
        if log:
            log.close()


def _step(opt: torch.optim.Optimizer, warm: bool) -> None:
    """One optimiser step; during warm-up the learning rate is 0, so Adam updates its moments only."""
    if not warm:
        opt.step()
        return
    lrs = [g["lr"] for g in opt.param_groups]
    for g in opt.param_groups:
        g["lr"] = 0.0
    opt.step()
    for g, lr in zip(opt.param_groups, lrs, strict=True):
        g["lr"] = lr


def check_abort(tc: TrainConfig, rows: list[dict[str, Any]]) -> None:
    """Stop (RsbenchError) when ``tc.abort_below``'s epoch is logged with a clean test accuracy below its bound."""
    if tc.abort_below is None:
        return
    epoch, least = tc.abort_rule()
    for row in rows:
        if int(row["epoch"]) == epoch and float(row["test_acc"]) < least:
            raise RsbenchError(f"training abandoned: clean test accuracy {float(row['test_acc']):.3f} < {least:g} "
                               f"after epoch {epoch} (train.abort_below, the SRA authors' restart rule); train "
                               "again with another seed")


def adapt_iterations(model: nn.Module) -> None:
    """Re-tune every Björck layer's iteration count to the least that meets its tolerance (SRA App. C.2.1)."""
    for m in model.modules():
        if hasattr(m, "adapt_iters"):
            m.adapt_iters()


def train_fingerprint(tc: TrainConfig, noise_sigma: float, seed: int) -> dict[str, Any]:
    """The loop's own settings a training checkpoint must match to be resumed (callers add model and data)."""
    # workers and the abort rule change no draw
    train = {k: v for k, v in dataclasses.asdict(tc).items() if k not in ("num_workers", "abort_below")}
    for key, neutral in (("objective", is_neutral), ("noise_mixture", lambda v: v is None),
                         ("warm_start", lambda v: v is None), ("adapt_at_start", lambda v: not v)):
        if neutral(train[key]):  # settings added later enter only when set: older checkpoints still resume
            del train[key]
    return {"train": train, "noise_sigma": float(noise_sigma), "seed": int(seed)}


def train_model(model: nn.Module, train_ds: Dataset, test_ds: Dataset, tc: TrainConfig, noise_sigma: float,
                seed: int, device: torch.device, log_path: str | None = None,
                eval_limit: int | None = None, state_path: str | Path | None = None,
                fingerprint: dict[str, Any] | None = None) -> dict[str, float]:
    """Train ``model`` with ``tc.objective`` (default: x + N(0, noise_sigma^2 I) inputs; ``tc.noise_mixture``
    draws each noise's sigma from a list), or on l2-PGD adversarial examples of the clean inputs when
    ``tc.attack`` names one; log each epoch; return final accuracies.

    ``tc.augment`` (resolved, not 'auto') augments each training batch first, from its own seeded generator.
    With ``state_path``, a training checkpoint is written there after every epoch, and an existing one is
    resumed (:mod:`rsbench.training.state`): a killed run, re-run, ends with the weights of an uninterrupted
    one. ``fingerprint`` (what else the weights depend on: model, data) must match the checkpoint's.
    Conv nets on image batches train in channels-last memory order (``tc.channels_last='auto'``).
    """
    require(noise_sigma >= 0 and math.isfinite(noise_sigma),
            f"train.noise_sigma={noise_sigma} is invalid: it must be >= 0")
    torch.manual_seed(seed)
    fmt = torch.channels_last if tc.channels_last == "auto" and prefers_channels_last(model, train_ds[0][0].shape) \
        else torch.contiguous_format
    model.to(device=device, memory_format=fmt)
    opt = OPTIMIZERS.get(tc.optimizer)(model.parameters(), tc)
    sched = SCHEDULES.get(tc.schedule)(opt, tc)
    loss_fn = make_loss(tc.loss)
    warm_steps, warm_fn = tc.warm_start_loss() if tc.warm_start is not None else (0, None)
    objective = make_objective(tc.objective)
    require(is_neutral(tc.objective) or noise_sigma > 0 or tc.noise_mixture,
            f"train.objective={check_objective(tc.objective)['name']} needs noise: train.noise_sigma must be > 0")
    noise = TrainingNoise(noise_sigma, tuple(float(s) for s in tc.noise_mixture) if tc.noise_mixture else None)

    def layout(t: torch.Tensor) -> torch.Tensor:
        return t.contiguous(memory_format=fmt) if t.dim() == 4 else t
    gens = {name: torch.Generator(device="cpu" if name == "order" else device).manual_seed(seed + i)
            for i, name in enumerate(GENERATORS)}
    st = TrainState(gens)
    fingerprint = {**train_fingerprint(tc, noise_sigma, seed), **(fingerprint or {})}
    if state_path is not None and Path(state_path).exists():
        load_train_state(state_path, model, opt, sched, st, fingerprint)
        rslog.info("resuming training from %s after epoch %d of %d", state_path, st.epoch, tc.epochs)
    attack = tc.attack_params()
    augment = AUGMENTS.get(tc.augment)
    n_train = min(len(train_ds), tc.max_examples or len(train_ds))
    per_epoch = -(-n_train // tc.batch_size)
    metrics: dict[str, float] = dict(st.rows[-1]) if st.rows else {}
    collapsed = False
    check_abort(tc, st.rows)  # a resumed run that was abandoned stays abandoned
    if tc.adapt_at_start and st.epoch == 0:
        adapt_iterations(model)
    with epoch_log(log_path, LOG_COLUMNS, tc.epochs * per_epoch, "train", st.rows, st.epoch * per_epoch) as (log, bar):
        for epoch in range(st.epoch + 1, tc.epochs + 1):
            t0 = time.perf_counter()
            model.train()
            loss_sum = right = seen = 0.0
            lr = opt.param_groups[0]["lr"]
            for x, y in batches(train_ds, tc.batch_size, True, gens["order"], tc.num_workers, tc.max_examples):
                x, y = augment(x.to(device), gens["augment"]), y.to(device)
                if attack is not None:
                    spec = {k: v for k, v in attack.items() if k != "mix"}
                    m = max(1, round(len(x) * attack.get("mix", 1.0)))
                    x = torch.cat([run_attack(spec, model, x[:m], y[:m], gens["attack"]), x[m:]])
                    loss, out = loss_fn(model, layout(x), y)
                else:
                    step_loss = warm_fn if st.step < warm_steps else loss_fn
                    loss, out = objective(model, x, y, StepContext(noise, gens, epoch, step_loss, layout))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                _step(opt, warm=st.step < tc.warmup_steps)
                st.step += 1
                loss_sum += loss.item() * len(y)
                right += float((out.argmax(1) == y).sum())
                seen += len(y)
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{loss_sum / seen:.3f}", refresh=False)
            sched.step()
            if epoch % tc.adapt_every == 0:
                adapt_iterations(model)
            clean, spread = evaluate(model, test_ds, 0.0, seed, device, limit=eval_limit)
            metrics = {
                "epoch": epoch, "lr": lr, "train_loss": loss_sum / seen, "train_acc": right / seen,
                "test_acc": clean,
                "test_acc_noisy": clean if noise_sigma == 0 else  # no noise: the clean pass again
                evaluate(model, test_ds, noise_sigma, seed, device, limit=eval_limit)[0],
                "time_s": time.perf_counter() - t0, "logit_spread": spread,
            }
            if not collapsed:
                collapsed = warn_collapse(spread, epoch, tc.loss)
            st.epoch = epoch
            st.rows.append(metrics)
            if state_path is not None:  # the state first: a kill between the two still logs each epoch once
                save_train_state(state_path, model, opt, sched, st, fingerprint)
            if log:
                log.append(metrics)
            check_abort(tc, st.rows)
    model.eval()
    return {**metrics, "train_wall_s": sum(float(r["time_s"]) for r in st.rows)}  # every epoch, across resumes
