"""The Python API: certify your own model from a script or a notebook, with the rows the CLI writes.

    import rsbench
    smoothed = rsbench.smooth(model, method="gaussian", sigma=0.25, num_classes=10)
    row = smoothed.certify(x, n0=100, n=100_000, alpha=0.001, seed=0)   # x: (C, H, W) in [0, 1]
    row["predict"], row["radius"], row["sound"]

``model`` is any ``torch.nn.Module`` from inputs in [0, 1] to logits (put its normalisation inside it, as
rsbench's own models do). Methods and their options are named as in ``conf/method/`` (docs/CONFIG.md): the
defaults come from there, and ``sigma`` (and ``K``) set the same top-level values as on the command line.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf, open_dict
from torch import nn

from rsbench.config_check import CONF_DIR, suggest
from rsbench.data.registry import DATASETS, DatasetSpec
from rsbench.errors import RsbenchError
from rsbench.methods import METHODS, make_method
from rsbench.methods.base import MethodContext
from rsbench.smoothed import Smoothed, check_model, check_num_classes
from rsbench.training.sigma_net import TRAINERS

_TOP_LEVEL = ("sigma", "K")  # values the method configs interpolate, as `sigma=` and `K=` on the command line


def method_config(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``conf/method/<name>.yaml`` with ``options`` applied and every interpolation resolved: what
    ``rsbench certify method=<name> method.<key>=<value> ...`` hands the method."""
    if name not in METHODS:
        raise RsbenchError(f"method={name!r} is invalid; valid values: {', '.join(METHODS)}"
                           f"{suggest(name, list(METHODS))}")
    top = [f"{k}={options[k]}" for k in _TOP_LEVEL if k in options]
    if GlobalHydra.instance().is_initialized():  # inside a Hydra app (a stage, a test harness)
        cfg = compose("certify", overrides=[f"method={name}", *top])
    else:
        with initialize_config_dir(CONF_DIR, version_base="1.3"):
            cfg = compose("certify", overrides=[f"method={name}", *top])
    keys = set(cfg.method) - {"name"}
    own = {k: v for k, v in options.items() if k not in _TOP_LEVEL or k in keys}
    unknown = sorted(set(own) - keys)
    if unknown:
        raise RsbenchError(f"method {name!r} has no option {unknown[0]!r}{suggest(unknown[0], sorted(keys))}; "
                           f"valid options: {', '.join(sorted(keys | set(_TOP_LEVEL) & set(options)))}")
    with open_dict(cfg):
        cfg = OmegaConf.merge(cfg, {"method": own})  # in the whole config: ${sigma} and ${scale...} still resolve
    return OmegaConf.to_container(cfg.method, resolve=True)


def weights_digest(model: nn.Module) -> str:
    """A short digest of ``model``'s weights: names a user's model in the caches that methods build from it."""
    h = hashlib.sha1()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def smooth(model: nn.Module, method: str = "gaussian", *, num_classes: int | None = None,
           input_shape: tuple[int, ...] | None = None, dataset: str | None = None, batch: int = 1000,
           precision: str = "fp32", train_data: Any = None, outputs_dir: str = "outputs", seed: int = 0,
           **options: Any) -> Smoothed:
    """The smoothed classifier of ``model`` under ``method`` (gaussian, mog, laplace, dsmooth, idrs, sra).

    ``options`` are the method's keys in ``conf/method/`` (e.g. ``sigma=0.5``; ``K=10, sigma_min=0.25``;
    ``certificate="componentwise"``). ``dataset`` (a registered name: mnist, cifar10, ...) gives
    ``num_classes`` and ``input_shape``; otherwise pass ``num_classes`` (and ``input_shape`` (C, H, W) where
    a method needs it). ``batch`` noisy inputs go through each forward pass; ``precision`` (fp32, bf16, fp16)
    runs the network under autocast.

    Methods that build something from the model first: ``dsmooth`` (the covariance of attack perturbations)
    and ``idrs`` (the sigma network) take ``train_data`` (a dataset of (x, label) pairs in [0, 1]), or the
    method option ``covariance=`` / ``sigma_net=`` naming a saved one. What they build is cached under
    ``outputs_dir``, keyed by a digest of the model's weights and ``seed``, as the CLI does. ``sra`` needs
    one of rsbench's 1-Lipschitz networks (``model=sra_mlp|sra_cnn``).
    """
    check_model(model)
    spec = DATASETS.get(dataset).spec() if dataset is not None else None
    num_classes = num_classes if num_classes is not None else (spec.num_classes if spec else None)
    if num_classes is None:
        raise RsbenchError("pass num_classes= (or dataset=<a registered name>)")
    check_num_classes(num_classes)
    shape = tuple(input_shape) if input_shape is not None else (tuple(spec.shape) if spec else None)
    if shape is not None and not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
        raise RsbenchError(f"input_shape={input_shape!r} is invalid: one point's shape, e.g. (3, 32, 32)")
    params = method_config(method, options)
    m = make_method(params)
    model = model.eval()
    device = next(iter(model.parameters()), torch.empty(0)).device
    context = None
    if hasattr(m, "prepare"):
        if shape is None:
            raise RsbenchError(f"method={method!r} builds its artefacts from the model: pass input_shape=(C, H, W) "
                               "or dataset=")
        digest = weights_digest(model)
        spec = spec or DatasetSpec(f"api-{digest}", "api", shape, int(num_classes), (), ())
        if method in _ARTEFACT and train_data is None and not params.get(_ARTEFACT[method][0]):
            raise RsbenchError(f"method={method!r} needs train_data= (its {_ARTEFACT[method][1]} is built from it), "
                               f"or the method option {_ARTEFACT[method][0]}= naming a saved one")
        context = MethodContext(int(seed), str(outputs_dir), model, {"checkpoint": f"api:{digest}"}, spec, device,
                                lambda: train_data, TRAINERS)
    return Smoothed.from_config(model, m, int(num_classes), shape, context, batch=batch, precision=precision)[0]


_ARTEFACT = {"dsmooth": ("covariance", "covariance"), "idrs": ("sigma_net", "sigma network")}
