"""Cross-entropy training of base classifiers: Gaussian noise augmentation (Cohen et al.) or l2-PGD
adversarial training (Madry et al.; the IDRS paper's base classifier)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rsbench.attacks import ATTACKS, run_attack
from rsbench.data.registry import TensorImages
from rsbench.errors import RsbenchError, check_count, check_positive, require
from rsbench.progress import progress
from rsbench.registry import Registry
from rsbench.results import ResultsCSV
from rsbench.training.augment import AUGMENTS

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
        from rsbench.training.losses import make_loss

        make_loss(tc.loss)
        require(tc.warmup_steps >= 0, f"train.warmup_steps={tc.warmup_steps} must be >= 0")
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
def epoch_log(log_path: str | None, columns: tuple[str, ...], steps: int,
              desc: str) -> Iterator[tuple[ResultsCSV | None, Any]]:
    """(per-epoch CSV log keyed by epoch, or None; progress bar over ``steps`` batches), both closed on exit."""
    log = ResultsCSV(log_path, columns, key="epoch") if log_path else None
    if log:
        log.open()
    bar = progress(total=steps, desc=desc, unit="batch")
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


def train_model(model: nn.Module, train_ds: Dataset, test_ds: Dataset, tc: TrainConfig, noise_sigma: float,
                seed: int, device: torch.device, log_path: str | None = None,
                eval_limit: int | None = None) -> dict[str, float]:
    """Train ``model`` with x + N(0, noise_sigma^2 I) inputs, or on l2-PGD adversarial examples of the
    clean inputs when ``tc.attack`` names one; log each epoch; return final accuracies.

    ``tc.augment`` (resolved, not 'auto') augments each training batch first, from its own seeded generator.
    """
    require(noise_sigma >= 0 and math.isfinite(noise_sigma),
            f"train.noise_sigma={noise_sigma} is invalid: it must be >= 0")
    torch.manual_seed(seed)
    model.to(device)
    opt = OPTIMIZERS.get(tc.optimizer)(model.parameters(), tc.lr, tc.momentum, tc.weight_decay)
    sched = SCHEDULES.get(tc.schedule)(opt, tc)
    from rsbench.training.losses import make_loss

    loss_fn = make_loss(tc.loss)
    step = 0
    order_gen = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator(device=device).manual_seed(seed + 1)
    attack = tc.attack_params()
    attack_gen = torch.Generator(device=device).manual_seed(seed + 2)
    augment = AUGMENTS.get(tc.augment)
    augment_gen = torch.Generator(device=device).manual_seed(seed + 3)
    n_train = min(len(train_ds), tc.max_examples or len(train_ds))
    metrics: dict[str, float] = {}
    with epoch_log(log_path, LOG_COLUMNS, tc.epochs * -(-n_train // tc.batch_size), "train") as (log, bar):
        for epoch in range(1, tc.epochs + 1):
            t0 = time.perf_counter()
            model.train()
            loss_sum = right = seen = 0.0
            lr = opt.param_groups[0]["lr"]
            for x, y in batches(train_ds, tc.batch_size, True, order_gen, tc.num_workers, tc.max_examples):
                x, y = augment(x.to(device), augment_gen), y.to(device)
                if attack is not None:
                    spec = {k: v for k, v in attack.items() if k != "mix"}
                    m = max(1, round(len(x) * attack.get("mix", 1.0)))
                    x = torch.cat([run_attack(spec, model, x[:m], y[:m], attack_gen), x[m:]])
                elif noise_sigma > 0:
                    x = x + noise_sigma * torch.randn(x.shape, generator=noise_gen, device=device)
                loss, out = loss_fn(model, x, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                _step(opt, warm=step < tc.warmup_steps)
                step += 1
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
            if log:
                log.append(metrics)
    model.eval()
    return metrics
