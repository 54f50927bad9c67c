"""What a smoothing method provides to the certify and predict stages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

from rsbench.certify.sampling import PointSampler
from rsbench.errors import RsbenchError
from rsbench.noise.base import Noise
from rsbench.registry import Registry


class Method(Protocol):
    """A smoothing method: its noise, the sigma its base model is trained with, and its certificate.

    ``certify`` returns the row fields beyond ``idx, label, correct, time_s``: at least ``predict``
    (-1 = abstain), ``radius`` and every name in ``columns``.
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


METHODS: Registry[type] = Registry("method")


def make_method(cfg: Mapping[str, Any]) -> Method:
    """Instantiate the method named ``cfg['name']`` with the rest of ``cfg`` as keyword arguments."""
    params = dict(cfg)
    cls = METHODS.get(params.pop("name", None))
    try:
        return cls(**params)
    except TypeError as exc:
        raise RsbenchError(f"method '{cls.name}': bad parameters {params}: {exc}") from exc
