"""Per-test-point stages (certify, predict): validated setup, Monte Carlo access, resumable row loop."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from rsbench.certify.sampling import PRECISIONS, autocast
from rsbench.data import DatasetSpec
from rsbench.errors import check_count, require
from rsbench.methods import make_method
from rsbench.methods.base import MethodContext
from rsbench.models.orthogonal import check_pixel_space
from rsbench.models.registry import NormalizedModel, build_model, check_input
from rsbench.progress import progress
from rsbench.results import ResultsCSV, check_fingerprint, partial_differs, refuse_other_configuration
from rsbench.sharding import shard_indices, write_plan
from rsbench.smoothed import Smoothed
from rsbench.stages.common import (
    dataset_settings,
    dataset_split,
    log,
    model_choice,
    model_reference,
    plain,
    resolve_model,
    select_device,
    select_indices,
)
from rsbench.stages.rundir import accept
from rsbench.training.sigma_net import TRAINERS

# sha256: the digest of the checkpoint's bytes as loaded, which verify reports against the published manifest
MODEL_FINGERPRINT_KEYS = ("arch", "params", "checkpoint", "weights_file", "train_noise_sigma", "clean_acc", "sha256")


@dataclass
class PointRun:
    """A validated per-test-point stage (certify, predict): the smoothed classifier, data and results file."""

    smoothed: Smoothed
    device: torch.device
    test_ds: Any
    spec: DatasetSpec
    indices: list[int]
    meta: dict[str, Any]
    csv_path: Path
    seed: int

    @property
    def method(self) -> Any:
        return self.smoothed.method

    @property
    def model(self) -> NormalizedModel:
        return self.smoothed.model

    def run(self, columns: tuple[str, ...], evaluate: Callable[[torch.Tensor, int], dict[str, Any]]) -> None:
        """Run ``evaluate`` on every point (``points_per_batch`` at a time); a reduced-precision run's rows say
        so (column ``precision``, filled by :class:`Smoothed`)."""
        sm = self.smoothed
        if sm.precision != "fp32":
            columns = (*columns, "precision")
        run_points(self.csv_path, columns, self.indices, self.test_ds, self.spec, self.device,
                   f"{self.csv_path.stem} {self.method.label()}", evaluate, sm.points_per_batch,
                   sm.pool.evaluate if sm.pool else None)


def prepare_point_run(cfg: DictConfig, stage: str, out: Path, settings: dict[str, Any]) -> PointRun:
    """Validate ``cfg.<stage>``, build method, data and model, and open ``<stage>.csv`` for resuming.

    ``settings`` (already validated Monte Carlo settings, e.g. n0, n, alpha) join the method, dataset,
    model and seed in the fingerprint that a resumed run dir must match.
    """

    section = cfg[stage]
    require(cfg.get("K") is None or cfg.method.get("K") is not None,
            f"K={cfg.get('K')} is a parameter of method=mog; add method=mog (current method: {cfg.method.name})")
    batch = section.batch if section.batch == "auto" else check_count(f"{stage}.batch", section.batch)
    per_batch = check_points_per_batch(section.get("points_per_batch", 1), stage)
    for key in ("channels_last", "pushforward"):
        require(section.get(key, "auto") in ("auto", "off"),
                f"{stage}.{key}={section.get(key)!r} is invalid; valid values: auto, off")

    precision = str(section.get("precision", "fp32"))
    require(precision in PRECISIONS, f"{stage}.precision={precision!r} is invalid; valid values: "
                                     f"{', '.join(PRECISIONS)}")
    if precision != "fp32":  # rows of another precision come from another classifier: never resume across
        settings = {**settings, "precision": precision}
    compile_ = section.get("compile", False)
    require(isinstance(compile_, bool), f"{stage}.compile={compile_!r} is invalid; valid values: true, false")
    if compile_:  # compiled kernels round differently: rows of the compiled network, never mixed with eager ones
        settings = {**settings, "compile": True}
    method = make_method(plain(cfg.method))
    device = select_device(cfg.device)
    test_ds, spec = dataset_split(cfg, "test")
    selection = {"dataset": spec.name, "total": len(test_ds), "skip": section.skip, "max": section.max}
    shard, num_shards = section.get("shard", 0), section.get("num_shards", 1)
    indices = shard_indices(select_indices(len(test_ds), section.skip, section.max), shard, num_shards)
    if spec.stand_in:
        log.warning("dataset %s is synthetic stand-in data: this is a smoke run, not a result", spec.name)
    if getattr(method, "pixel_space_model", False):  # refuse before any default model is trained
        arch, params = model_choice(cfg)
        check_pixel_space(build_model(arch, spec, params))
    csv_path = out / f"{stage}.csv"
    fingerprint_path = out / f"{stage}.fingerprint.json"
    config_part = {"dataset": dataset_settings(cfg), "method": plain(cfg.method), **settings, "seed": int(cfg.seed)}
    overwrite = bool(section.overwrite)
    if not overwrite:  # before any model is loaded or trained: a run dir holding another configuration's rows
        refuse_other_configuration(fingerprint_path, partial_differs(
            fingerprint_path, {**config_part, "model": model_reference(cfg, spec, method.train_sigma)}))
    model, meta = resolve_model(cfg, spec, method.train_sigma, device)
    k = points_per_batch(per_batch)
    context = MethodContext(int(cfg.seed), str(cfg.outputs_dir), model, meta, spec, device,
                            lambda: dataset_split(cfg, "train")[0], TRAINERS)
    smoothed, artefacts = Smoothed.from_config(
        model, method, spec.num_classes, spec.shape, context, batch=1, precision=precision,
        channels_last=section.get("channels_last", "auto"), pushforward=section.get("pushforward", "auto"),
        points_per_batch=k, compile=compile_)
    fingerprint = {"dataset": config_part["dataset"], "model": {k: meta.get(k) for k in MODEL_FINGERPRINT_KEYS},
                   "method": config_part["method"], **({"artefacts": artefacts} if artefacts else {}),
                   **settings, "seed": int(cfg.seed)}
    if not overwrite:  # resuming: the old rows must come from this configuration and plan
        check_fingerprint(fingerprint_path, fingerprint, False)
        write_plan(out / f"{stage}.plan.json", selection, shard, num_shards, indices)
        accept(out)
    if k > 1:
        log.info("%s.points_per_batch=%d: %d test points share each forward batch", stage, k, k)
    if compile_:
        log.info("%s.compile=true: the network runs under torch.compile (the first batches of each shape compile)",
                 stage)
    if batch == "auto":
        batch = fastest_batch(smoothed.model, spec, device, smoothed.channels_last, PRECISIONS[precision])
        log.info("%s.batch=auto: %d samples per forward pass", stage, batch)
    smoothed.batch = batch
    if overwrite:  # everything is valid: only now are the old rows replaced (a refused run loses nothing)
        csv_path.unlink(missing_ok=True)
        check_fingerprint(fingerprint_path, fingerprint, True)
        write_plan(out / f"{stage}.plan.json", selection, shard, num_shards, indices, replace=True)
        accept(out)
    return PointRun(smoothed, device, test_ds, spec, indices, meta, csv_path, int(cfg.seed))


def check_points_per_batch(value: Any, stage: str = "certify") -> int | str:
    """``<stage>.points_per_batch``, checked: 'auto' or an integer >= 1."""
    require(value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1),
            f"{stage}.points_per_batch={value!r} is invalid; valid values: auto or an integer >= 1")
    return value


def points_per_batch(value: int | str) -> int:
    """A checked ``points_per_batch`` resolved: 'auto' is 1, because pooling points was measured no faster
    on the 2-core CPU (1.00x, python scripts/bench multipoint) and the pooling the stage runs is not yet timed on a
    GPU (docs/PERFORMANCE.md); an explicit K is taken as given."""
    return 1 if value == "auto" else int(value)


GPU_BATCHES = tuple(100 * 2 ** k for k in range(11))  # 100 ... 102,400: up to the memory limit


@torch.inference_mode()
def fastest_batch(model: torch.nn.Module, spec: DatasetSpec, device: torch.device, channels_last: bool = False,
                  precision: torch.dtype | None = None, candidates: tuple[int, ...] | None = None,
                  budget_s: float = 0.15) -> int:
    """The forward batch size with the highest throughput for this model here (a short probe per size),
    at the precision the run uses. On CPU the sizes 100 ... 1,600; on a GPU doubling from 100 until memory
    runs out or throughput has fallen twice in a row. Results do not depend on the batch size (noise is
    seeded per block), only speed does.
    """


    on_gpu = device.type == "cuda"
    candidates = candidates or (GPU_BATCHES if on_gpu else (100, 200, 400, 800, 1600))
    best, best_rate, worse = candidates[0], 0.0, 0
    for b in candidates:
        try:
            x = torch.rand(b, *spec.shape, device=device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, precision):
                model(x)  # warm-up
                _sync(device)
                reps, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < budget_s:
                    model(x).argmax(1)
                    _sync(device)
                    reps += 1
        except torch.OutOfMemoryError:  # the largest batch that fits was the previous one
            x = None
            torch.cuda.empty_cache()
            break
        rate = reps * b / (time.perf_counter() - t0)
        if rate > best_rate:
            best, best_rate, worse = b, rate, 0
        else:
            worse += 1
            if on_gpu and worse == 2:
                break
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_points(csv_path: Path, columns: tuple[str, ...], indices: list[int], test_ds: Any,
               spec: DatasetSpec, device: torch.device, desc: str,
               evaluate: Callable[[torch.Tensor, int], dict[str, Any]], group: int = 1,
               evaluate_group: Callable[[list[tuple[torch.Tensor, int]], Callable], list[dict[str, Any]]] | None = None
               ) -> None:
    """Evaluate each test index not yet in ``csv_path`` and append its row (flushed) as it is produced.
    With ``group`` > 1, ``evaluate_group(items, evaluate)`` takes ``group`` points at a time and their rows
    are appended in index order once the group is done (``time_s``: the group's time over its size).

    ``evaluate(x, idx)`` returns the method's fields including ``predict``; ``idx``, ``label``,
    ``correct`` and ``time_s`` are added here, and ``pixels`` (the image's pixel source) where the dataset
    records one (CIFAR-10's shared layout). A tqdm bar shows progress and running accuracy.
    """


    pixels = getattr(test_ds, "pixels", None)
    if pixels is not None:
        columns = (*columns, "pixels")
    with ResultsCSV(csv_path, columns) as results:
        done = results.open()
        todo = [i for i in indices if i not in done]
        if len(todo) < len(indices):
            log.info("resuming %s: %d of %d points already done", csv_path, len(indices) - len(todo),
                     len(indices))
        right, k = 0, 0
        with progress(total=len(todo), desc=desc, unit="pt") as bar:  # closed (drawn final) on interrupt too
            for start in range(0, len(todo), group):
                chunk = todo[start:start + group]
                items = []
                for i in chunk:
                    x, label = test_ds[i]
                    check_input(x, spec, f"test point {i}")
                    items.append((x.to(device), i, int(label)))
                t0 = time.perf_counter()
                if evaluate_group is None or len(items) == 1:
                    rows = [evaluate(x, i) for x, i, _ in items]
                else:
                    rows = evaluate_group([(x, i) for x, i, _ in items], evaluate)
                elapsed = (time.perf_counter() - t0) / len(items)
                for (_, i, label), row in zip(items, rows, strict=True):
                    row.update(idx=i, label=label, correct=int(row["predict"] == label), time_s=elapsed)
                    if pixels is not None:
                        row["pixels"] = pixels[i]
                    results.append(row)
                    right, k = right + row["correct"], k + 1
                bar.update(len(items))
                bar.set_postfix(acc=f"{right / k:.3f}", refresh=False)
