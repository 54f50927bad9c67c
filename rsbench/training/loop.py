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
from rsbench.training.state import GENERATORS, TrainState, load_train_state, save_train_state

OPTIMIZERS: Registry = Registry("optimizer")
OPTIMIZERS.register("sgd")(lambda params, lr, momentum, weight_decay: torch.optim.SGD(
    params, lr=lr, momentum=momentum, weight_decay=weight_decay))
OPTIMIZERS.register("adam")(lambda params, lr, momentum, weight_decay: torch.optim.Adam(
    params, lr=lr, weight_decay=weight_decay))

SCHEDULES: Registry = Registry("lr schedule")  # per-epoch schedules: (optimizer, TrainConfig) -> scheduler
SCHEDULES.register("constant")(lambda opt, tc: torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0))
SCHEDULES.register("step")(lambda opt, tc: torch.optim.lr_scheduler.StepLR(opt, step_size=tc.step_size,
                                                                           gamma=tc.gamma))
SCHEDULES.register("cosine")(lambda opt, tc: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=tc.epochs))
# Loshchilov & Hutter's warm restarts (SRA App. C.5: n0 = 20 epochs, period x m = 2 after each restart)
SCHEDULES.register("cosine_restarts")(lambda opt, tc: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
    opt, T_0=tc.restart_period, T_mult=tc.restart_mult))

LOG_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "test_acc", "test_acc_noisy", "time_s")


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
    warmup_steps: int = 0     # Adam moment warm-up: first steps update m and v only (SRA App. C.5: 2000)
    restart_period: int = 20  # cosine_restarts: n0
    restart_mult: int = 2     # cosine_restarts: m
    adapt_every: int = 10     # re-tune Björck iteration counts every this many epochs (1-Lipschitz layers)
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
        require(tc.channels_last in ("auto", "off"),
                f"train.channels_last={tc.channels_last!r} is invalid; valid values: auto, off")
        require(tc.warmup_steps >= 0, f"train.warmup_steps={tc.warmup_steps} must be >= 0")
        objective = check_objective(tc.objective)
        if objective["name"] != "gaussian":
            require(tc.attack_params() is None, f"train.attack trains on attacks of the base model; "
                    f"train.objective={objective['name']} has its own: use one of them")
            require(dict(tc.loss or {}).get("name", "sce") == "sce",
                    f"train.loss applies to train.objective=gaussian; {objective['name']} defines its own loss")
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


@torch.inference_mode()
def accuracy(model: nn.Module, ds: Dataset, sigma: float, seed: int, device: torch.device,
             batch_size: int = 500, limit: int | None = None) -> float:
    """Top-1 accuracy on ``ds``, clean (sigma = 0) or under one seeded N(0, sigma^2 I) draw per image."""
    model.eval()
    g = torch.Generator(device=device).manual_seed(seed)
    right = total = 0
    for x, y in batches(ds, batch_size, shuffle=False, limit=limit):
        x, y = x.to(device), y.to(device)
        if sigma > 0:
            x = x + sigma * torch.randn(x.shape, generator=g, device=device)
        right += int((model(x).argmax(1) == y).sum())
        total += len(y)
    return right / max(total, 1)


@contextmanager
def epoch_log(log_path: str | None, columns: tuple[str, ...], steps: int, desc: str,
              rows: list[dict[str, Any]] | None = None, done: int = 0) -> Iterator[tuple[ResultsCSV | None, Any]]:
    """(per-epoch CSV log keyed by epoch, or None; progress bar over ``steps`` batches), both closed on exit.

    The log is first rewritten to hold exactly ``rows`` (a resumed training's epochs so far, each once);
    the bar starts at ``done`` batches.
    """
    log = ResultsCSV(log_path, columns, key="epoch") if log_path else None
    if log:
        text = ",".join(columns) + "\n" + "".join(format_row(r, columns) for r in rows or [])
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


def train_fingerprint(tc: TrainConfig, noise_sigma: float, seed: int) -> dict[str, Any]:
    """The loop's own settings a training checkpoint must match to be resumed (callers add model and data)."""
    train = {k: v for k, v in dataclasses.asdict(tc).items() if k != "num_workers"}  # workers change no draw
    for key, neutral in (("objective", is_neutral), ("noise_mixture", lambda v: v is None)):
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
    opt = OPTIMIZERS.get(tc.optimizer)(model.parameters(), tc.lr, tc.momentum, tc.weight_decay)
    sched = SCHEDULES.get(tc.schedule)(opt, tc)
    loss_fn = make_loss(tc.loss)
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
                    loss, out = objective(model, x, y, StepContext(noise, gens, epoch, loss_fn, layout))
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
                for m in model.modules():
                    if hasattr(m, "adapt_iters"):
                        m.adapt_iters()
            metrics = {
                "epoch": epoch, "lr": lr, "train_loss": loss_sum / seen, "train_acc": right / seen,
                "test_acc": accuracy(model, test_ds, 0.0, seed, device, limit=eval_limit),
                "test_acc_noisy": accuracy(model, test_ds, noise_sigma, seed, device, limit=eval_limit),
                "time_s": time.perf_counter() - t0,
            }
            st.epoch = epoch
            st.rows.append(metrics)
            if state_path is not None:  # the state first: a kill between the two still logs each epoch once
                save_train_state(state_path, model, opt, sched, st, fingerprint)
            if log:
                log.append(metrics)
    model.eval()
    return {**metrics, "train_wall_s": sum(float(r["time_s"]) for r in st.rows)}  # every epoch, across resumes
