"""A smoothed classifier: a base model and a smoothing method, with Cohen et al.'s CERTIFY and PREDICT.

This is the one path from a test point to a result row. The Python API (:func:`rsbench.smooth`) returns a
:class:`Smoothed`; the certify and predict stages build one from their config and call the same
:meth:`Smoothed.certify_fields` / :meth:`Smoothed.predict_fields`, so API rows and CLI rows agree bit for bit.

Invariant (kept by :mod:`rsbench.certify.sampling`): every draw is seeded by (seed, idx, phase, block), so a
row depends only on (model, method, x, idx, seed, n0, n, alpha): not on ``batch``, on the other points
certified, or on their order. ``idx`` names the point's noise stream; give each point of a data set its
own index (its position in the test set, as the CLI does).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from rsbench.certify.multipoint import ForwardPool, PooledModel
from rsbench.certify.pushforward import LinearPushforward
from rsbench.certify.sampling import PRECISIONS, PointSampler
from rsbench.errors import RsbenchError, check_count, check_probability
from rsbench.log import log
from rsbench.methods.base import Method
from rsbench.models.registry import prefers_channels_last
from rsbench.noise.base import ScaledGaussian


@dataclass
class Smoothed:
    """``method``'s smoothed version of ``model`` (a module from [0, 1] inputs to ``num_classes`` logits).

    Sampling settings (none changes a row): ``batch`` noisy inputs per forward pass, ``channels_last`` memory
    order, the linear first-layer ``pushforward`` sampler, ``points_per_batch`` points sharing forward
    batches (:meth:`certify_batch`), ``compile`` (the network under torch.compile). ``precision`` (fp32,
    bf16, fp16) runs the network under autocast: the certified classifier is the network at that precision,
    and rows record it.
    """

    model: nn.Module
    method: Method
    num_classes: int
    batch: int = 1000
    pushforward: Any = None
    channels_last: bool = False
    precision: str = "fp32"
    points_per_batch: int = 1
    compile: bool = False
    pool: ForwardPool | None = field(default=None, init=False)
    # shared draws (:meth:`share_draws`): the counts of every point, reused by Smoothed objects of the same
    # model and sampling settings whose methods draw the same way
    memo: dict | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise RsbenchError(f"precision={self.precision!r} is invalid; valid values: {', '.join(PRECISIONS)}")
        check_count("batch", self.batch)
        # samplers (only they) see pooled or compiled forwards; attacks and everything else keep the model itself
        forward = compiled(self.model) if self.compile else self.model
        self._sampling: tuple[Any, ...] = (forward, self.pushforward)
        if self.points_per_batch > 1:
            self.pool = ForwardPool()  # Monte Carlo counts pool whole; single forward calls by concatenation
            self._sampling = (PooledModel(forward, self.pool), self.pushforward, forward)

    @classmethod
    def build(cls, model: nn.Module, method: Method, num_classes: int, input_shape: tuple[int, ...] | None = None,
              batch: int = 1000, precision: str = "fp32", channels_last: str = "auto", pushforward: str = "auto",
              points_per_batch: int = 1, compile: bool = False) -> Smoothed:
        """A :class:`Smoothed` with the sampling choices `rsbench certify` makes ('auto'): channels-last order
        for conv nets on (C, H, W) images (``input_shape`` None: any conv net), and the pushforward sampler for
        Gaussian noise into a linear first layer at fp32, uncompiled. Both leave the distribution unchanged."""
        for key, value in (("channels_last", channels_last), ("pushforward", pushforward)):
            if value not in ("auto", "off"):
                raise RsbenchError(f"{key}={value!r} is invalid; valid values: auto, off")
        cl = channels_last == "auto" and prefers_channels_last(model, input_shape or (0, 0, 0))
        if cl:
            model = model.to(memory_format=torch.channels_last)
        pf = None
        if (pushforward == "auto" and precision == "fp32" and not compile and isinstance(method.noise, ScaledGaussian)
                and LinearPushforward.applies(model)):
            log.info("linear first layer: drawing its output directly (pushforward sampler, same distribution)")
            pf = LinearPushforward(model)
        return cls(model, method, num_classes, batch, pf, cl, precision, points_per_batch, compile)

    @property
    def device(self) -> torch.device:
        return next(iter(self.model.parameters()), torch.empty(0)).device

    # -- the rows the stages write --------------------------------------------------------------------------
    def sampler(self, x: torch.Tensor, idx: int, seed: int) -> PointSampler:
        """Monte Carlo access to point ``x`` (noise stream ``idx``) under the method's noise."""
        model, pushforward, *base = self._sampling
        return PointSampler(model, self.method.noise, x, idx, self.num_classes, self.batch, seed, pushforward,
                            self.channels_last, PRECISIONS[self.precision], self.pool, *base, memo=self.memo)

    def share_draws(self, memo: dict) -> None:
        """Read and record every Monte Carlo count in ``memo``: a call already made with the same (seed, idx,
        n, phase, stream, noise, ...) by another Smoothed sharing ``memo`` returns those counts instead of drawing
        again. Share one memo only among Smoothed objects of the same model, points and sampling settings (the
        certify stage's ``method.certificate=[...]`` does); rows are then those each would give alone."""
        self.memo = memo

    def _tagged(self, fields: dict[str, Any]) -> dict[str, Any]:
        return fields if self.precision == "fp32" else {**fields, "precision": self.precision}

    def certify_fields(self, x: torch.Tensor, idx: int, seed: int, n0: int, n: int, alpha: float,
                       sequential: Any = None) -> dict[str, Any]:
        """The method's CERTIFY fields at one point (predict, radius, sound, counts, bounds, ...)."""
        return self._tagged(self.method.certify(self.sampler(x, idx, seed), n0, n, alpha, sequential))

    def predict_fields(self, x: torch.Tensor, idx: int, seed: int, n: int, alpha: float) -> dict[str, Any]:
        """The method's PREDICT fields at one point (predict, -1 = abstain; counts, p-value, ...)."""
        return self._tagged(self.method.predict(self.sampler(x, idx, seed), n, alpha))

    # -- the public API -------------------------------------------------------------------------------------
    def certify(self, x: torch.Tensor, n0: int = 100, n: int = 100_000, alpha: float = 0.001, seed: int = 0,
                idx: int = 0, label: int | None = None) -> dict[str, Any]:
        """Cohen et al.'s CERTIFY at ``x`` (C, H, W) in [0, 1]: ``n0`` draws select the class, ``n`` fresh draws
        bound it (one-sided Clopper-Pearson at ``alpha`` for hard votes). Returns the row `rsbench certify`
        writes: ``idx``, ``predict`` (-1 = abstain), ``radius``, ``sound`` and the method's counts and bounds;
        with ``label``, also ``label`` and ``correct``; ``time_s``."""
        return self.certify_batch([x], None if label is None else [label], n0, n, alpha, seed, [idx])[0]

    def predict(self, x: torch.Tensor, n: int = 100_000, alpha: float = 0.001, seed: int = 0, idx: int = 0,
                label: int | None = None) -> dict[str, Any]:
        """Cohen et al.'s PREDICT at ``x``: the top class of ``n`` draws, or -1 (abstain) unless the two-sided
        binomial test of top-1 against top-2 rejects at ``alpha``. Returns the row `rsbench predict` writes."""
        return self.predict_batch([x], None if label is None else [label], n, alpha, seed, [idx])[0]

    def certify_batch(self, xs: torch.Tensor | Sequence[torch.Tensor], labels: Sequence[int] | None = None,
                      n0: int = 100, n: int = 100_000, alpha: float = 0.001, seed: int = 0,
                      indices: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """:meth:`certify` at every point of ``xs`` (a (B, C, H, W) tensor or a list), point ``j`` with noise
        stream ``indices[j]`` (default ``j``): the rows the CLI writes for those test indices."""
        check_count("n0", n0)
        check_count("n", n)
        check_probability("alpha", alpha)
        return self._rows(xs, labels, indices, lambda x, i: self.certify_fields(x, i, seed, n0, n, alpha))

    def predict_batch(self, xs: torch.Tensor | Sequence[torch.Tensor], labels: Sequence[int] | None = None,
                      n: int = 100_000, alpha: float = 0.001, seed: int = 0,
                      indices: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """:meth:`predict` at every point of ``xs``."""
        check_count("n", n)
        check_probability("alpha", alpha)
        return self._rows(xs, labels, indices, lambda x, i: self.predict_fields(x, i, seed, n, alpha))

    def _rows(self, xs: Iterable[torch.Tensor], labels: Sequence[int] | None, indices: Sequence[int] | None,
              fields: Any) -> list[dict[str, Any]]:
        xs = list(xs)
        indices = list(range(len(xs))) if indices is None else [int(i) for i in indices]
        if len(indices) != len(xs) or (labels is not None and len(labels) != len(xs)):
            raise RsbenchError(f"{len(xs)} points but {len(indices)} indices"
                               + ("" if labels is None else f" and {len(labels)} labels"))
        if len(set(indices)) != len(indices):
            raise RsbenchError("indices repeat: each point needs its own noise stream")
        rows = []
        for j, (x, i) in enumerate(zip(xs, indices, strict=True)):
            x = self.check_point(x, i)
            t0 = time.perf_counter()
            row = {"idx": i, **fields(x, i)}
            if labels is not None:
                row.update(label=int(labels[j]), correct=int(row["predict"] == int(labels[j])))
            rows.append({**row, "time_s": time.perf_counter() - t0})
        return rows

    def check_point(self, x: torch.Tensor, idx: int) -> torch.Tensor:
        """``x`` on the model's device, refused with one line if it is not a finite float image in [0, 1]."""
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise RsbenchError(f"point {idx}: expected a float tensor (C, H, W) in [0, 1], got {type(x).__name__}"
                               + (f" of dtype {x.dtype}" if isinstance(x, torch.Tensor) else ""))
        if x.dim() < 1 or not torch.isfinite(x).all():
            raise RsbenchError(f"point {idx}: the input holds non-finite values (NaN or inf) or has no dimensions")
        if float(x.min()) < 0 or float(x.max()) > 1:
            raise RsbenchError(f"point {idx}: pixel values lie in [{float(x.min()):.3g}, {float(x.max()):.3g}], not "
                               "[0, 1]: pass images before normalisation; the model normalises them itself")
        return x.to(self.device)


def compiled(model: nn.Module) -> nn.Module:
    """``model`` with its network under ``torch.compile`` (static shapes: one compile per batch size), sharing
    its weights; the model itself stays eager (attacks and everything else use it)."""
    import torch._dynamo  # lazy: dynamo takes seconds to import, and only certify.compile=true needs it

    # one graph per batch size (clean point, n0, batch, remainders, pooled sizes): more than dynamo's default 8,
    # past which it would silently fall back to the eager network
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    out = copy.copy(model)  # a new module object: its own _modules, the same parameters and buffers
    if "net" in out._modules:
        out._modules = {**model._modules, "net": torch.compile(model.net, dynamic=False)}
        return out
    return torch.compile(model, dynamic=False)
