"""What a smoothing method provides to the certify and predict stages."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from rsbench.certify.sampling import PointSampler
from rsbench.data.registry import DatasetSpec
from rsbench.errors import RsbenchError
from rsbench.noise.base import Noise
from rsbench.registry import Registry


class Method(Protocol):
    """A smoothing method: its noise, the sigma its base model is trained with, and its certificate.

    ``certify`` returns the row fields beyond ``idx, label, correct, time_s``: at least ``predict``
    (-1 = abstain), ``radius`` and every name in ``columns``. A method may also define
    ``prepare(ctx: MethodContext) -> dict``: called once before the first point, it builds or loads the
    method's own artefacts (e.g. the IDRS sigma network) and returns what identifies them (it joins the
    run's fingerprint).
    """

    name: ClassVar[str]
    columns: ClassVar[tuple[str, ...]]

    @property
    def noise(self) -> Noise: ...

    @property
    def train_sigma(self) -> float: ...

    def label(self) -> str: ...

    def certify(self, sampler: PointSampler, n0: int, n: int, alpha: float,
                sequential: Any = None) -> dict[str, Any]: ...

    def predict(self, sampler: PointSampler, n: int, alpha: float) -> dict[str, Any]: ...


@dataclass
class MethodContext:
    """What a method's ``prepare`` may use: the seed and the cache root, the base model, the data and the device.

    ``model_meta['checkpoint']`` (or ``weights_file``) names the base model in the cache keys of what
    ``prepare`` builds from it (sigma networks, covariances), so two models never share one.
    """

    seed: int
    outputs_dir: str
    model: nn.Module
    model_meta: dict[str, Any]
    spec: DatasetSpec
    device: torch.device
    train_data: Callable[[], Any]  # loads the training split on demand
    # trains what a method builds from the model (IDRS: its sigma network), given by the layer above (the stages'
    # model resolution, the API), so that methods never import the training package
    trainers: Mapping[str, Callable[..., Any]] = field(default_factory=dict)


METHODS: Registry[type] = Registry("method")


def make_method(cfg: Mapping[str, Any]) -> Method:
    """Instantiate the method named ``cfg['name']`` with the rest of ``cfg`` as keyword arguments."""
    params = dict(cfg)
    cls = METHODS.get(params.pop("name", None))
    try:
        return cls(**params)
    except TypeError as exc:
        raise RsbenchError(f"method '{cls.name}': bad parameters {params}: {exc}") from exc


def method_from_params(params: Mapping[str, Any]) -> Method:
    """:func:`make_method` from a superset of the method's parameters (a saved config, or a results row whose
    other columns are not parameters): the keys its constructor does not take are left out."""
    cls = METHODS.get(params["name"])
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    return make_method({k: v for k, v in params.items() if k in accepted or k == "name"})
