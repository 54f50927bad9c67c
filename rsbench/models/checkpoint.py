"""Checkpoints: a state_dict plus metadata, saved atomically and loaded with ``weights_only=True``.

A checkpoint is data, never code. Its metadata records the architecture and its params, the dataset
(and family), the Gaussian noise used in training and the measured accuracies; a checkpoint whose
architecture or dataset does not match the config is refused.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rsbench.cache import atomic_write, torch_writer
from rsbench.data.registry import DatasetSpec
from rsbench.errors import RsbenchError
from rsbench.models.cohen import is_cohen_checkpoint, load_cohen
from rsbench.models.macer import is_macer_checkpoint, load_macer
from rsbench.models.manifest import check_digest, sha256_bytes
from rsbench.models.registry import MODELS, NormalizedModel, build_model

FORMAT = "rsbench-checkpoint/1"


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any]) -> Path:
    """Write ``{"format", "state_dict", "meta"}`` to ``path`` via a temporary file and an atomic rename."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return atomic_write(path, torch_writer({"format": FORMAT, "state_dict": state, "meta": meta}))


# where released weights come from: rsbench never downloads any
WEIGHTS_SOURCE = ("rsbench downloads no weights: Cohen et al.'s released models are the .pth.tar files of the "
                  "models archive linked from their repository (locuslab/smoothing), e.g. "
                  "models/cifar10/resnet110/noise_0.25/checkpoint.pth.tar; MACER's and SmoothMix's are linked from "
                  "theirs")


def read_bytes(path: Path, what: str, hint: str = "") -> bytes:
    """The bytes of a model file, read once (what is hashed is what is loaded); a missing path, or a directory,
    is a one-line :class:`RsbenchError` (with ``hint``: where such files come from)."""
    if path.is_dir():
        raise RsbenchError(f"{what} {path} is a directory, not a file; name the file inside it "
                           f"(e.g. {path / ('checkpoint.pth.tar' if hint else 'model.pt')})")
    if not path.is_file():
        raise RsbenchError(f"{what} {path} does not exist" + (f". {hint}" if hint else ""))
    return path.read_bytes()


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint file; every way it can be broken becomes a one-line :class:`RsbenchError`. ``meta`` gains
    ``sha256``, the digest of the bytes loaded."""
    path = Path(path)
    data = read_bytes(path, "checkpoint")
    try:
        blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RsbenchError(f"checkpoint {path} is corrupted or not a torch checkpoint: {first}") from exc
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise RsbenchError(f"checkpoint {path} is not an rsbench checkpoint (expected format {FORMAT!r}); "
                           "for torchvision weights use model.weights_file=")
    state, meta = blob.get("state_dict"), blob.get("meta")
    if not isinstance(state, dict) or not isinstance(meta, dict) or "arch" not in meta or "dataset" not in meta:
        raise RsbenchError(f"checkpoint {path} is incomplete: it lacks state_dict or meta (arch, dataset)")
    check_finite_state(state, f"checkpoint {path}")
    return state, {**meta, "sha256": sha256_bytes(data)}


def check_finite_state(state: dict[str, Any], what: str) -> None:
    """Refuse weights holding NaN or inf: a network built on them certifies nonsense (argmax of NaN is class 0)."""
    bad = [k for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()
           and not bool(torch.isfinite(v).all())]
    if bad:
        raise RsbenchError(f"{what} holds non-finite weights (NaN or inf) in {len(bad)} tensor(s), e.g. {bad[0]!r}; "
                           "it is damaged or came from a diverged training run")


def load_model(path: str | Path, arch: str, params: dict[str, Any], spec: DatasetSpec
               ) -> tuple[NormalizedModel, dict[str, Any]]:
    """Build ``arch`` for ``spec`` and load checkpoint ``path`` into it, refusing any mismatch; a published
    checkpoint (named in the manifest beside its real file) must match the manifest's sha256 first."""
    state, meta = read_checkpoint(path)
    check_digest(path, meta["sha256"])
    stored = {**legacy_params(meta["arch"]), **dict(meta.get("params", {}))}
    if meta["arch"] != arch or stored != dict(params):
        raise RsbenchError(
            f"checkpoint {path} holds arch={meta['arch']} params={stored} but the config "
            f"asks for arch={arch} params={dict(params)}; set model={meta['arch']} (and its params) to use it")
    if meta.get("family", meta["dataset"]) != spec.family:
        raise RsbenchError(f"checkpoint {path} was trained on dataset {meta['dataset']} but the config "
                           f"certifies {spec.name}; their inputs and classes differ")
    model = build_model(arch, spec, params)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise RsbenchError(f"checkpoint {path} does not fit arch={arch}: "
                           f"{str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else exc}"
                           ) from exc
    return model, meta


def legacy_params(arch: str) -> dict[str, Any]:
    """Values of the params ``arch`` gained after older checkpoints were written (the builder's
    ``legacy_params``): a checkpoint without such a param was trained with this value."""
    return dict(getattr(MODELS.get(arch), "legacy_params", {})) if arch in MODELS else {}


def load_weights_file(path: str | Path, arch: str, params: dict[str, Any], spec: DatasetSpec
                      ) -> tuple[NormalizedModel, dict[str, Any]]:
    """A model from ``model.weights_file``: a released checkpoint of the field in its own layout, arch and
    normalisation (Cohen et al.'s and the repositories that kept it: SmoothAdv, consistency, SmoothMix,
    :mod:`rsbench.models.cohen`; MACER's, :mod:`rsbench.models.macer`), or a plain torchvision state_dict
    loaded into ``arch``'s network."""

    path = Path(path)
    data = read_bytes(path, "model.weights_file", WEIGHTS_SOURCE)
    digest = sha256_bytes(data)
    try:
        blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, foreign, or pickled code (refused by weights_only)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RsbenchError(f"model.weights_file {path} is corrupted or not a torch weights file: {first}") from exc
    for detect, load, key, who in ((is_cohen_checkpoint, load_cohen, "state_dict", "Cohen et al.'s layout"),
                                   (is_macer_checkpoint, load_macer, "net", "MACER's layout")):
        if detect(blob):
            check_finite_state(blob[key], f"model.weights_file {path}")
            model, meta = load(path, blob, spec)
            if meta["arch"] != arch:
                raise RsbenchError(f"model.weights_file {path} is a {meta.get('cohen_arch', meta['arch'])} in "
                                   f"{who} (rsbench arch {meta['arch']}), but the config asks for model {arch}; "
                                   f"set model={meta['arch']} or leave model at the dataset default")
            return model, {**meta, "weights_file": str(path), "sha256": digest}
    if isinstance(blob, dict):
        check_finite_state(blob, f"model.weights_file {path}")
    model = build_model(arch, spec, params)
    try:
        model.net.load_state_dict(blob, strict=True)
    except Exception as exc:
        raise RsbenchError(f"model.weights_file {path} could not be loaded into the network: "
                           f"{str(exc).strip().splitlines()[0]}") from exc
    return model, {"arch": arch, "params": params, "dataset": spec.name, "weights_file": str(path), "sha256": digest}
