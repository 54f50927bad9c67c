"""What every stage shares: error handling, device choice, data and model resolution."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from rsbench.data import DatasetSpec, load_split
from rsbench.errors import RsbenchError, check_count, require
from rsbench.models.checkpoint import load_model, load_weights_file, save_checkpoint
from rsbench.models.registry import NormalizedModel, build_model, full_params
from rsbench.sharding import shard_indices, write_plan

log = logging.getLogger("rsbench")
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def _run_name(override_dirname: str) -> str:
    """A run dir name from the command's overrides: one path component, never a way out of outputs_dir."""
    name = override_dirname.replace("/", "_").replace("\\", "_") or "default"
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

    If the failing run produced nothing but Hydra's bookkeeping, its run dir is removed, so bad
    input leaves no partial output behind.
    """
    out = output_dir()
    try:
        body(cfg, out)
    except RsbenchError as exc:
        print(f"rsbench {stage}: error: {exc}", file=sys.stderr, flush=True)
        if out.is_dir() and all(_is_bookkeeping(p, stage) for p in out.iterdir()):
            shutil.rmtree(out, ignore_errors=True)
            _remove_empty_parents(out, Path(str(cfg.get("outputs_dir", "outputs"))))
        sys.exit(2)


def _is_bookkeeping(path: Path, stage: str) -> bool:
    """Files a run dir holds before its first result row: Hydra's config and log, our fingerprint and plan,
    and a results CSV with nothing but its header."""
    if path.name in {".hydra", f"{stage}.log", f"{stage}.fingerprint.json", f"{stage}.plan.json"}:
        return True
    if path.name == f"{stage}.csv":
        return len(path.read_bytes().splitlines()) <= 1
    return False


def _remove_empty_parents(path: Path, root: Path) -> None:
    """Remove now-empty folders between ``path`` and ``root`` (exclusive) that a failed run created."""
    root = root.resolve()
    parent = path.resolve().parent
    while parent != root and root in parent.parents and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent


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


def default_model_path(cfg: DictConfig, spec: DatasetSpec, arch: str, params: dict[str, Any],
                       sigma: float) -> Path:
    """Where the cached default model for (dataset, arch, params, sigma, seed, train settings) lives."""
    key = json.dumps({"dataset": spec.name, "arch": arch, "params": params, "sigma": sigma,
                      "seed": cfg.seed, "train": plain(cfg.train)}, sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    return Path(cfg.outputs_dir) / "models" / f"{spec.name}-{arch}-sigma{sigma:g}-{digest}" / "model.pt"


def train_and_save(cfg: DictConfig, arch: str, params: dict[str, Any], sigma: float, ckpt: Path,
                   device: torch.device, log_path: Path | None) -> dict[str, Any]:
    """Train ``arch`` on the configured dataset with N(0, sigma^2) augmentation and save a checkpoint."""
    from rsbench.training.loop import TrainConfig, train_model

    tc = TrainConfig.from_cfg(plain(cfg.train))
    train_ds, spec = dataset_split(cfg, "train")
    test_ds, _ = dataset_split(cfg, "test")
    torch.manual_seed(int(cfg.seed))  # the seed fixes the initial weights too
    model = build_model(arch, spec, params)
    metrics = train_model(model, train_ds, test_ds, tc, sigma, int(cfg.seed), device,
                          str(log_path) if log_path else None)
    meta = {"arch": arch, "params": params, "dataset": spec.name, "family": spec.family,
            "input_shape": list(spec.shape), "num_classes": spec.num_classes,
            "train_noise_sigma": float(sigma), "seed": int(cfg.seed), "epochs": tc.epochs,
            "clean_acc": metrics["test_acc"], "noisy_acc": metrics["test_acc_noisy"],
            "stand_in": spec.stand_in}
    save_checkpoint(ckpt, model, meta)
    return meta


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
        model = build_model(arch, spec, params)
        load_weights_file(model, cfg.model.weights_file)
        meta = {"arch": arch, "params": params, "dataset": spec.name, "weights_file": str(cfg.model.weights_file)}
    else:
        ckpt = default_model_path(cfg, spec, arch, params, sigma)
        if not ckpt.exists():
            log.info("no model.checkpoint given: training the default %s for %s at sigma=%g -> %s",
                     arch, spec.name, sigma, ckpt)
            train_and_save(cfg, arch, params, sigma, ckpt, device, ckpt.with_name("train_log.csv"))
        model, meta = load_model(ckpt, arch, params, spec)
        meta = {**meta, "checkpoint": str(ckpt)}
    train_sigma = meta.get("train_noise_sigma")
    if train_sigma is not None and abs(float(train_sigma) - sigma) > 1e-12:
        log.warning("the base model was trained with noise sigma=%g but smoothing uses sigma=%g",
                    train_sigma, sigma)
    return model.to(device).eval(), meta


def select_indices(total: int, skip: int, max_index: int) -> list[int]:
    """Cohen et al.'s test-point selection: every ``skip``-th index below ``max_index`` (-1 = all)."""
    check_count("skip", skip)
    require(isinstance(max_index, int) and max_index >= -1, f"max={max_index!r} is invalid: use -1 or >= 0")
    stop = total if max_index < 0 else min(total, max_index)
    return list(range(0, stop, skip))


MODEL_FINGERPRINT_KEYS = ("arch", "params", "checkpoint", "weights_file", "train_noise_sigma", "clean_acc")


@dataclass
class PointRun:
    """A validated per-test-point stage (certify, predict): method, data, model and results file."""

    method: Any
    device: torch.device
    test_ds: Any
    spec: DatasetSpec
    indices: list[int]
    model: NormalizedModel
    meta: dict[str, Any]
    csv_path: Path
    batch: int
    seed: int
    pushforward: Any = None
    channels_last: bool = False

    def sampler(self, x: torch.Tensor, idx: int) -> Any:
        """Monte Carlo access to test point ``idx`` under the method's noise (seeded per point)."""
        from rsbench.certify.sampling import PointSampler

        return PointSampler(self.model, self.method.noise, x, idx, self.spec.num_classes, self.batch, self.seed,
                            self.pushforward, self.channels_last)

    def run(self, columns: tuple[str, ...], evaluate: Callable[[torch.Tensor, int], dict[str, Any]]) -> None:
        run_points(self.csv_path, columns, self.indices, self.test_ds, self.spec, self.device,
                   f"{self.csv_path.stem} {self.method.label()}", evaluate)


def prepare_point_run(cfg: DictConfig, stage: str, out: Path, settings: dict[str, Any]) -> PointRun:
    """Validate ``cfg.<stage>``, build method, data and model, and open ``<stage>.csv`` for resuming.

    ``settings`` (already validated Monte Carlo settings, e.g. n0, n, alpha) join the method, dataset,
    model and seed in the fingerprint that a resumed run dir must match.
    """
    from rsbench.methods import make_method
    from rsbench.results import check_fingerprint

    section = cfg[stage]
    require(cfg.get("K") is None or cfg.method.get("K") is not None,
            f"K={cfg.get('K')} is a parameter of method=mog; add method=mog (current method: {cfg.method.name})")
    batch = section.batch if section.batch == "auto" else check_count(f"{stage}.batch", section.batch)
    for key in ("channels_last", "pushforward"):
        require(section.get(key, "auto") in ("auto", "off"),
                f"{stage}.{key}={section.get(key)!r} is invalid; valid values: auto, off")
    method = make_method(plain(cfg.method))
    device = select_device(cfg.device)
    test_ds, spec = dataset_split(cfg, "test")
    selection = {"dataset": spec.name, "total": len(test_ds), "skip": section.skip, "max": section.max}
    shard, num_shards = section.get("shard", 0), section.get("num_shards", 1)
    indices = shard_indices(select_indices(len(test_ds), section.skip, section.max), shard, num_shards)
    if spec.stand_in:
        log.warning("dataset %s is synthetic stand-in data: this is a smoke run, not a result", spec.name)
    model, meta = resolve_model(cfg, spec, method.train_sigma, device)
    csv_path = out / f"{stage}.csv"
    if section.overwrite and csv_path.exists():
        csv_path.unlink()
    check_fingerprint(out / f"{stage}.fingerprint.json",
                      {"dataset": plain(cfg.dataset), "model": {k: meta.get(k) for k in MODEL_FINGERPRINT_KEYS},
                       "method": plain(cfg.method), **settings, "seed": int(cfg.seed)},
                      bool(section.overwrite))
    write_plan(out / f"{stage}.plan.json", selection, shard, num_shards, indices)
    channels_last = _use_channels_last(model, spec, section.get("channels_last", "auto"))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if batch == "auto":
        batch = fastest_batch(model, spec, device, channels_last)
        log.info("%s.batch=auto: %d samples per forward pass", stage, batch)
    return PointRun(method, device, test_ds, spec, indices, model, meta, csv_path, batch, int(cfg.seed),
                    _pushforward(model, section.get("pushforward", "auto")), channels_last)


def _use_channels_last(model: torch.nn.Module, spec: DatasetSpec, mode: str) -> bool:
    """'auto': channels-last memory order for convolutional models on image inputs (2x faster convs here)."""
    return mode == "auto" and len(spec.shape) == 3 and any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


@torch.inference_mode()
def fastest_batch(model: torch.nn.Module, spec: DatasetSpec, device: torch.device, channels_last: bool = False,
                  candidates: tuple[int, ...] = (100, 200, 400, 800, 1600), budget_s: float = 0.15) -> int:
    """The forward batch size with the highest throughput for this model here (a short probe per size).

    Results do not depend on the batch size (noise is seeded per block), only speed does.
    """
    import time

    best, best_rate = candidates[0], 0.0
    for b in candidates:
        x = torch.rand(b, *spec.shape, device=device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        model(x)  # warm-up
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < budget_s:
            model(x).argmax(1)
            reps += 1
        rate = reps * b / (time.perf_counter() - t0)
        if rate > best_rate:
            best, best_rate = b, rate
    return best


def _pushforward(model: NormalizedModel, mode: str) -> Any:
    """The linear-first-layer sampler when ``mode`` is 'auto' and the model allows it, else None."""
    from rsbench.certify.pushforward import LinearPushforward

    if mode == "auto" and LinearPushforward.applies(model):
        log.info("linear first layer: drawing its output directly (pushforward sampler, same distribution)")
        return LinearPushforward(model)
    return None


def run_points(csv_path: Path, columns: tuple[str, ...], indices: list[int], test_ds: Any,
               spec: DatasetSpec, device: torch.device, desc: str,
               evaluate: Callable[[torch.Tensor, int], dict[str, Any]]) -> None:
    """Evaluate each test index not yet in ``csv_path`` and append its row (flushed) as it is produced.

    ``evaluate(x, idx)`` returns the method's fields including ``predict``; ``idx``, ``label``,
    ``correct`` and ``time_s`` are added here. A tqdm bar shows progress and running accuracy.
    """
    import time

    from rsbench.models.registry import check_input
    from rsbench.progress import progress
    from rsbench.results import ResultsCSV

    with ResultsCSV(csv_path, columns) as results:
        done = results.open()
        todo = [i for i in indices if i not in done]
        if len(todo) < len(indices):
            log.info("resuming %s: %d of %d points already done", csv_path, len(indices) - len(todo),
                     len(indices))
        right = 0
        bar = progress(todo, desc=desc, unit="pt")
        for k, i in enumerate(bar, start=1):
            x, label = test_ds[i]
            check_input(x, spec, f"test point {i}")
            t0 = time.perf_counter()
            row = evaluate(x.to(device), i)
            row.update(idx=i, label=int(label), correct=int(row["predict"] == int(label)),
                       time_s=time.perf_counter() - t0)
            results.append(row)
            right += row["correct"]
            bar.set_postfix(acc=f"{right / k:.3f}", refresh=False)
        bar.close()
