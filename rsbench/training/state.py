"""Training checkpoints that make a killed training resume to the same weights, bit for bit.

After every completed epoch the loop writes one file (atomically, :func:`rsbench.cache.atomic_write`):

- the model's state_dict and every module attribute that changes during training but is not in it
  (the Björck iteration counts of 1-Lipschitz layers, re-tuned every ``adapt_every`` epochs);
- the optimizer's and the scheduler's state_dicts, and the step counter (Adam's warm-up);
- every random state the loop draws from: torch's global generator (and CUDA's), and the loop's own
  generators for the data order, the noise, the attack and the augmentation;
- the epoch log rows so far, so ``train_log.csv`` is rewritten from them and holds each epoch once;
- a fingerprint of the settings the weights depend on. A state written under other settings is refused
  (one line naming what differs), never silently continued.

Invariant: resuming from the state written after epoch k replays epochs k + 1 ... E with exactly the
draws an uninterrupted run makes, so the final weights are identical on CPU (on a GPU, up to the
non-determinism of its kernels). Loaded with ``weights_only=True``: a state file is data, never code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rsbench.cache import atomic_write, torch_writer
from rsbench.errors import RsbenchError

FORMAT = "rsbench-train-state/1"
GENERATORS = ("order", "noise", "attack", "augment")


@dataclass
class TrainState:
    """What the loop carries from one epoch to the next (besides the model and optimizer themselves)."""
    generators: dict[str, torch.Generator]
    epoch: int = 0                       # last completed epoch
    step: int = 0                        # optimizer steps taken (warm-up counter)
    rows: list[dict[str, Any]] = field(default_factory=list)  # the epoch log so far


def _iteration_counts(model: nn.Module) -> dict[str, int]:
    return {name: int(m.iters) for name, m in model.named_modules() if hasattr(m, "adapt_iters")}


def save_train_state(path: str | Path, model: nn.Module, opt: torch.optim.Optimizer, sched: Any,
                     state: TrainState, fingerprint: dict[str, Any]) -> Path:
    """Write the training checkpoint after epoch ``state.epoch`` (atomic: the old one or the new, never a part)."""
    blob = {
        "format": FORMAT, "fingerprint": fingerprint, "epoch": state.epoch, "step": state.step,
        "rows": state.rows, "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "iters": _iteration_counts(model), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
        "rng": {name: g.get_state() for name, g in state.generators.items()},
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }
    return atomic_write(path, torch_writer(blob))


def _differences(saved: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> list[str]:
    keys = sorted(set(saved) | set(wanted))
    out = []
    for k in keys:
        a, b = saved.get(k), wanted.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k} ({a!r} there, {b!r} now)")
    return out


def load_train_state(path: str | Path, model: nn.Module, opt: torch.optim.Optimizer, sched: Any,
                     state: TrainState, fingerprint: dict[str, Any]) -> None:
    """Restore a training checkpoint into ``model``, ``opt``, ``sched`` and ``state`` (in place).

    A damaged file, a foreign file or one written under other settings is a one-line :class:`RsbenchError`.
    """
    path = Path(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, foreign, or pickled code (refused by weights_only)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RsbenchError(f"training checkpoint {path} is corrupted ({first}); delete it to train from "
                           "scratch, or pass train.overwrite=true") from exc
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise RsbenchError(f"{path} is not an rsbench training checkpoint (expected format {FORMAT!r}); "
                           "delete it, or pass train.overwrite=true")
    diff = _differences(blob["fingerprint"], fingerprint)
    if diff:
        raise RsbenchError(f"training checkpoint {path} was written with other settings: {'; '.join(diff[:3])}; "
                           "re-run with those settings to resume, or pass train.overwrite=true to start again")
    try:
        model.load_state_dict(blob["model"], strict=True)
        for name, m in model.named_modules():
            if name in blob["iters"]:
                m.iters = blob["iters"][name]
        opt.load_state_dict(blob["optimizer"])
        sched.load_state_dict(blob["scheduler"])
        for name, g in state.generators.items():
            g.set_state(blob["rng"][name])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise RsbenchError(f"training checkpoint {path} does not fit this model or optimizer ({exc}); "
                           "pass train.overwrite=true to start again") from exc
    torch.set_rng_state(blob["torch_rng"])
    if blob["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(blob["cuda_rng"])
    state.epoch, state.step, state.rows = int(blob["epoch"]), int(blob["step"]), list(blob["rows"])
