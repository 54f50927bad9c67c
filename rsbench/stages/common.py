"""What every stage shares: error handling, device choice, data and model resolution."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import signal
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from rsbench.cache import DISK_ERRNOS, cached, disk_error
from rsbench.config_check import CONF_DIR, check_common  # noqa: F401  (CONF_DIR: the stages' Hydra apps use it)
from rsbench.data import DatasetSpec, load_split
from rsbench.errors import RsbenchError, check_count, require
from rsbench.log import log
from rsbench.models.checkpoint import load_model, load_weights_file, save_checkpoint
from rsbench.models.registry import NormalizedModel, build_model, full_params
from rsbench.provenance import machine, source_commit
from rsbench.runtime import threads_from_slurm, tune_allocator
from rsbench.stages.rundir import RunDirInUse, run_dir_lock, stage_records, take_back_bookkeeping
from rsbench.training.augment import resolve_augment
from rsbench.training.loop import TrainConfig, train_model
from rsbench.training.objectives import check_objective, is_neutral

_GENERIC_STEMS = {"model", "checkpoint", "best", "last", "certify"}  # rsbench's own file names say nothing


def _short_path(path: str) -> str:
    """A path's file stem (``/a/resnet20_s0.25.pt`` -> ``resnet20_s0.25``); rsbench's own generic file
    names take their directory's name instead (``outputs/train/experiment-cohen_mnist__sigma-0.5/model.pt``
    -> ``experiment-cohen_mnist,sigma-0.5``). The run's fingerprint keeps the full path, so two files
    with the same short name never share results: resuming into the other's run dir is refused."""
    parts = [p for p in re.split(r"[/\\]", path) if p not in ("", ".", "..")]
    if not parts:
        return "root"
    stem = parts[-1]
    while re.search(r".\.[A-Za-z][A-Za-z0-9]{0,4}$", stem):  # file extensions (.pt, .pth.tar, .csv), not ".5"
        stem = stem.rsplit(".", 1)[0]
    if stem in _GENERIC_STEMS and len(parts) > 1:
        stem = parts[-2]
    return stem.replace("__", ",")


def _short_value(value: str) -> str:
    """An override value with every path in it (alone or in a list) shortened by :func:`_short_path`."""
    return re.sub(r"[^,\[\]{}'\"]*[/\\][^,\[\]{}'\"]*", lambda m: _short_path(m[0]), value)


def shell_safe(text: str) -> str:
    """``text`` with only characters a shell takes as they are, still readable: brackets and quotes dropped,
    ``key: value`` -> ``key-value``, ``a, b`` -> ``a,b``, any other space or special character -> ``_``
    (``{name: smoothed_pgd, eps: 0.5}`` -> ``name-smoothed_pgd,eps-0.5``)."""
    text = re.sub(r"\s*:\s*", "-", text)
    text = re.sub(r",\s+", ",", text)
    text = re.sub(r"[\[\]{}()'\"]", "", text)
    return re.sub(r"[^A-Za-z0-9._,+@%-]", "_", text)


def _run_name(task: list[str], exclude: list[str]) -> str:
    """A run dir name from the command's overrides (Hydra's ``override_dirname``: sorted ``key-value``
    items joined by ``__``, ``exclude`` left out), with paths shortened to file stems, made :func:`shell_safe`.
    One path component, never a way out of outputs_dir."""
    items = []
    for line in sorted(str(t) for t in task):
        key, _, value = line.partition("=")
        if key.lstrip("+~") not in exclude:
            quoted = value[:1] in ("'", '"')  # a title or label, not a path
            items.append(f"{key}-{value if quoted else _short_value(value)}")
    name = shell_safe("__".join(items).replace("/", "_").replace("\\", "_").replace("=", "-")) or "default"
    if len(name) > 180:  # file names are limited to 255 bytes: keep a readable prefix and a hash of the rest
        name = f"{name[:160]}__{hashlib.sha1(name.encode()).hexdigest()[:12]}"
    return "_" + name if name.startswith(".") else name


if not OmegaConf.has_resolver("run_name"):
    OmegaConf.register_new_resolver("run_name", _run_name)


def plain(cfg: DictConfig | Any) -> Any:
    """A resolved plain-Python copy of a config node."""
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def output_dir() -> Path:
    return Path(HydraConfig.get().runtime.output_dir)


def run_stage(stage: str, body: Callable[[DictConfig, Path], None], cfg: DictConfig) -> None:
    """Run a stage body; an :class:`RsbenchError` becomes one line on stderr and exit status 2.

    The run dir's records are written when the stage accepts the dir (:mod:`rsbench.stages.rundir`), or at its
    end; a refused run writes none. If the failing run produced nothing but bookkeeping, its run dir is removed,
    so bad input leaves no partial output behind.
    """
    out = output_dir()
    tune_allocator()  # here, not in the CLI: SLURM tasks enter through this function too
    threads_from_slurm()
    if hasattr(signal, "SIGXFSZ"):  # past a file-size limit, writes fail with EFBIG instead of killing us
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        try:
            check_common(cfg)
            with run_dir_lock(out, stage), stage_records(stage, cfg) as records:
                body(cfg, out)
                records.accept(out)  # a stage that accepted its run dir earlier has written its records already
        except OSError as exc:
            if exc.errno not in DISK_ERRNOS:
                raise
            raise disk_error(exc, exc.filename or str(out)) from exc
    except RsbenchError as exc:
        print(f"rsbench {stage}: error: {exc}", file=sys.stderr, flush=True)
        if not isinstance(exc, RunDirInUse):  # another process's run dir is never ours to tidy
            take_back_bookkeeping(out, stage, Path(str(cfg.get("outputs_dir", "outputs"))))
        if os.environ.get("SUBMITIT_FOLDER"):  # a cluster job: submitit records an exception, not an exit status
            raise JobFailed(f"rsbench {stage} in {out}: {exc}") from None
        sys.exit(2)


class JobFailed(RuntimeError):
    """A stage that failed inside a submitit job (SLURM or local launcher): raised, so the submitting
    process reports the job, its run dir and the one-line error instead of counting it as done."""


def select_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; otherwise the named device, which must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise RsbenchError(f"device={name!r} is invalid: {exc}") from exc
    require(dev.type != "cuda" or torch.cuda.is_available(), f"device={name!r} but CUDA is not available")
    return dev


def dataset_split(cfg: DictConfig, split: str) -> tuple[Any, DatasetSpec]:
    d = plain(cfg.dataset)
    name = d.pop("name")
    d.pop("default_model", None)
    return load_split(name, split, **d)


def model_choice(cfg: DictConfig) -> tuple[str, dict[str, Any]]:
    arch = cfg.model.arch
    require(isinstance(arch, str) and arch, "model.arch is not set")
    return arch, full_params(arch, dict(plain(cfg.model.params) or {}))


# train settings whose default leaves training unchanged: left out of the cache key, so models cached before
# these settings existed stay valid
NEUTRAL_TRAIN = {"attack": (None, {"name": "none"}), "init_checkpoint": (None,), "augment": ("none",),
                 "channels_last": ("auto",),
                 "loss": ({"name": "sce", "d": None, "var_x": None},), "warmup_steps": (0,),
                 "restart_period": (20,), "restart_mult": (2,), "adapt_every": (10,),
                 "objective": ({"name": "gaussian"},), "noise_mixture": (None,), "warm_start": (None,),
                 "adapt_at_start": (False,), "abort_below": (None,)}


def default_model_path(cfg: DictConfig, spec: DatasetSpec, arch: str, params: dict[str, Any],
                       sigma: float) -> Path:
    """Where the cached default model for (dataset, arch, params, sigma, seed, train settings) lives."""
    train = plain(cfg.train)
    train["augment"] = resolve_augment(train.get("augment", "none"), spec)
    train = {k: v for k, v in train.items() if v not in NEUTRAL_TRAIN.get(k, ())}
    key = json.dumps({"dataset": spec.name, "arch": arch, "params": params, "sigma": sigma,
                      "seed": cfg.seed, "train": train}, sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    return Path(cfg.outputs_dir) / "models" / f"{spec.name}-{arch}-sigma{sigma:g}-{digest}" / "model.pt"


def train_and_save(cfg: DictConfig, arch: str, params: dict[str, Any], sigma: float, ckpt: Path,
                   device: torch.device, log_path: Path | None, state_path: Path | None = None) -> dict[str, Any]:
    """Train ``arch`` on the configured dataset (N(0, sigma^2) augmentation, or ``train.attack``) and save it.

    With ``state_path``, a training checkpoint is kept there after every epoch, resumed if present, and
    removed once ``ckpt`` is saved: a killed training, re-run, continues from its last completed epoch.
    """
    train_ds, spec = dataset_split(cfg, "train")
    tc = TrainConfig.from_cfg(plain(cfg.train))
    tc = dataclasses.replace(tc, augment=resolve_augment(tc.augment, spec))
    test_ds, _ = dataset_split(cfg, "test")
    torch.manual_seed(int(cfg.seed))  # the seed fixes the initial weights too
    model = build_model(arch, spec, params)
    init = cfg.train.get("init_checkpoint")
    if init:  # fine-tuning (DSmooth fine-tunes standard models on clean + attacked images)
        model, _ = load_model(init, arch, params, spec)
        log.info("fine-tuning from %s", init)
    attack = tc.attack_params()
    if attack is not None:
        sigma = 0.0  # adversarial training replaces noise augmentation
    fingerprint = {"arch": arch, "params": params, "dataset": dataset_settings(cfg), "init_checkpoint": init}
    commit = source_commit()  # the code this process runs: taken now, not when a long training ends
    metrics = train_model(model, train_ds, test_ds, tc, sigma, int(cfg.seed), device,
                          str(log_path) if log_path else None, state_path=state_path, fingerprint=fingerprint)
    meta = {"arch": arch, "params": params, "dataset": spec.name, "family": spec.family,
            "input_shape": list(spec.shape), "num_classes": spec.num_classes,
            "train_noise_sigma": float(sigma), "seed": int(cfg.seed), "epochs": tc.epochs,
            "clean_acc": metrics["test_acc"], "noisy_acc": metrics["test_acc_noisy"],
            "stand_in": spec.stand_in, "train_attack": attack, "init_checkpoint": init, "augment": tc.augment,
            "train_pixels": pixel_counts(train_ds), "commit": commit, "machine": machine(device),
            "train_wall_s": metrics.get("train_wall_s"),
            "train_objective": None if is_neutral(tc.objective) else check_objective(tc.objective),
            "train_noise_mixture": tc.noise_mixture, "train_loss": tc.loss, "train_warm_start": tc.warm_start,
            "train_optimizer": tc.optimizer}
    save_checkpoint(ckpt, model.to(memory_format=torch.contiguous_format), meta)
    if state_path is not None:
        state_path.unlink(missing_ok=True)
    return meta


def dataset_settings(cfg: DictConfig) -> dict[str, Any]:
    """The dataset settings results depend on: not where the files or the cache live, so moving them keeps resume."""
    return {k: v for k, v in plain(cfg.dataset).items() if k not in ("data_dir", "cache_dir", "download")}


def pixel_counts(ds: Any) -> dict[str, int] | None:
    """How many images of ``ds`` come from each pixel source (None where the dataset does not say)."""
    pixels = getattr(ds, "pixels", None)
    return None if pixels is None else dict(sorted(Counter(pixels).items()))


def model_reference(cfg: DictConfig, spec: DatasetSpec, sigma: float) -> dict[str, str]:
    """How a run's fingerprint names its base model, known before the model is loaded or trained:
    ``{"checkpoint": path}``, ``{"weights_file": path}`` or ``{"checkpoint": "cache:<default model>"}``."""
    if cfg.model.checkpoint:
        return {"checkpoint": str(cfg.model.checkpoint)}
    if cfg.model.get("weights_file"):
        return {"weights_file": str(cfg.model.weights_file)}
    arch, params = model_choice(cfg)
    return {"checkpoint": f"cache:{default_model_path(cfg, spec, arch, params, sigma).parent.name}"}


def resolve_model(cfg: DictConfig, spec: DatasetSpec, sigma: float, device: torch.device
                  ) -> tuple[NormalizedModel, dict[str, Any]]:
    """The base classifier: ``model.checkpoint``, else ``model.weights_file``, else a cached default.

    The default is trained once with ``train`` settings and noise ``sigma`` and cached under
    ``outputs_dir/models/``, so ``rsbench certify`` works with no prior step.
    """
    arch, params = model_choice(cfg)
    if cfg.model.checkpoint:
        model, meta = load_model(cfg.model.checkpoint, arch, params, spec)
        meta = {**meta, "checkpoint": str(cfg.model.checkpoint)}
    elif cfg.model.get("weights_file"):
        model, meta = load_weights_file(cfg.model.weights_file, arch, params, spec)
    else:
        ckpt = default_model_path(cfg, spec, arch, params, sigma)

        def build(folder: Path) -> None:
            log.info("no model.checkpoint given: training the default %s for %s at sigma=%g -> %s",
                     arch, spec.name, sigma, ckpt.parent)
            folder.mkdir()
            # the training checkpoint lives outside the temporary folder, so a killed build resumes
            state = ckpt.parent.with_name(f".{ckpt.parent.name}.train_state.pt")
            train_and_save(cfg, arch, params, sigma, folder / ckpt.name, device, folder / "train_log.csv", state)

        cached(ckpt.parent, build, f"the default {arch} model")
        model, meta = load_model(ckpt, arch, params, spec)
        # named by its cache entry, not its path: moving outputs_dir keeps fingerprints and derived caches valid
        meta = {**meta, "checkpoint": f"cache:{ckpt.parent.name}"}
    train_sigma = meta.get("train_noise_sigma")
    if train_sigma is not None and abs(float(train_sigma) - sigma) > 1e-12 and not meta.get("train_attack"):
        log.warning("the base model was trained with noise sigma=%g but smoothing uses sigma=%g",
                    train_sigma, sigma)
    return model.to(device).eval(), meta


def select_indices(total: int, skip: int, max_index: int) -> list[int]:
    """Cohen et al.'s test-point selection: every ``skip``-th index below ``max_index`` (-1 = all)."""
    check_count("skip", skip)
    require(isinstance(max_index, int) and max_index >= -1, f"max={max_index!r} is invalid: use -1 or >= 0")
    stop = total if max_index < 0 else min(total, max_index)
    return list(range(0, stop, skip))
