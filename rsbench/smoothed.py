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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from rsbench.certify.multipoint import ForwardPool, PooledModel
from rsbench.certify.pushforward import LinearPushforward
from rsbench.certify.sampling import PRECISIONS, PointSampler
from rsbench.errors import RsbenchError, check_count, check_probability
from rsbench.log import log
from rsbench.methods.base import Method, MethodContext, make_method
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
    input_shape: tuple[int, ...] | None = None  # one point's shape (C, H, W); None: taken from the first point
    pool: ForwardPool | None = field(default=None, init=False)
    # shared draws (:meth:`share_draws`): the counts of every point, reused by Smoothed objects of the same
    # model and sampling settings whose methods draw the same way
    memo: dict | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        check_model(self.model)
        check_num_classes(self.num_classes)
        self._forward_checked = False
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
    def from_config(cls, model: nn.Module, method: Method | Mapping[str, Any], num_classes: int,
                    input_shape: tuple[int, ...] | None = None, context: MethodContext | None = None,
                    **sampling: Any) -> tuple[Smoothed, dict[str, Any]]:
        """The one road from a method's configuration to a smoothed classifier, for ``rsbench.smooth`` and the
        certify, predict and robustness stages alike: the method (from its ``conf/method/`` keys, or built
        already), its artefacts prepared from the model (``prepare(context)``: IDRS's sigma network, DSmooth's
        covariance) and the sampling choices of :meth:`build`. Returns (the smoothed classifier, what identifies
        the artefacts: it joins a run's fingerprint)."""
        m = make_method(method) if isinstance(method, Mapping) else method
        artefacts = m.prepare(context) if hasattr(m, "prepare") and context is not None else {}
        return cls.build(model, m, num_classes, input_shape, **sampling), artefacts

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
        check_model(model)
        cl = channels_last == "auto" and prefers_channels_last(model, input_shape or (0, 0, 0))
        if cl:
            model = model.to(memory_format=torch.channels_last)
        pf = None
        if (pushforward == "auto" and precision == "fp32" and not compile and isinstance(method.noise, ScaledGaussian)
                and LinearPushforward.applies(model)):
            log.info("linear first layer: drawing its output directly (pushforward sampler, same distribution)")
            pf = LinearPushforward(model)
        return cls(model, method, num_classes, batch, pf, cl, precision, points_per_batch, compile,
                   None if input_shape is None else tuple(int(d) for d in input_shape))

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
        return self.certify_batch([self.one_point(x, "certify")], None if label is None else [label], n0, n, alpha,
                                  seed, [idx])[0]

    def predict(self, x: torch.Tensor, n: int = 100_000, alpha: float = 0.001, seed: int = 0, idx: int = 0,
                label: int | None = None) -> dict[str, Any]:
        """Cohen et al.'s PREDICT at ``x``: the top class of ``n`` draws, or -1 (abstain) unless the two-sided
        binomial test of top-1 against top-2 rejects at ``alpha``. Returns the row `rsbench predict` writes."""
        return self.predict_batch([self.one_point(x, "predict")], None if label is None else [label], n, alpha, seed,
                                  [idx])[0]

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

    def one_point(self, x: Any, call: str) -> Any:
        """``x`` for :meth:`certify` / :meth:`predict`: one point, never a batch (of one)."""
        if isinstance(x, torch.Tensor) and self.input_shape is not None and x.dim() == len(self.input_shape) + 1:
            raise RsbenchError(f"x has shape {tuple(x.shape)}, a batch; {call}() takes one point of shape "
                               f"{self.input_shape}: pass x[0], or use {call}_batch(x) for a batch")
        if isinstance(x, torch.Tensor) and self.input_shape is None and x.dim() == 4 and x.shape[0] == 1:
            raise RsbenchError(f"x has shape {tuple(x.shape)}, a batch of one; {call}() takes one point (C, H, W): "
                               f"pass x[0], or use {call}_batch(x) for a batch")
        return x

    def _points(self, xs: Any) -> list[Any]:
        """The points of ``xs``: a (B, *point shape) tensor or a sequence of points."""
        if xs is None or isinstance(xs, (str, bytes)):
            raise RsbenchError(f"xs must be a (B, C, H, W) tensor or a list of (C, H, W) points, got {xs!r}")
        if isinstance(xs, torch.Tensor):
            if xs.dim() < 2:
                raise RsbenchError(f"xs has shape {tuple(xs.shape)}: a batch is (B, C, H, W)")
            if self.input_shape is not None and tuple(xs.shape) == self.input_shape:
                raise RsbenchError(f"xs has shape {tuple(xs.shape)}, one point; the batch calls take (B, "
                                   f"{', '.join(map(str, self.input_shape))}): use xs.unsqueeze(0), or "
                                   "certify(x) / predict(x) for one point")
        return list(xs)

    def check_label(self, label: Any, j: int) -> int:
        if isinstance(label, bool) or not isinstance(label, (int, torch.Tensor)) or \
                (isinstance(label, torch.Tensor) and (label.numel() != 1 or label.is_floating_point())):
            raise RsbenchError(f"labels[{j}]={label!r} is invalid: a label is an integer class index")
        label = int(label)
        if not 0 <= label < self.num_classes:
            raise RsbenchError(f"labels[{j}]={label} is not a class of num_classes={self.num_classes} "
                               f"(valid: 0 to {self.num_classes - 1})")
        return label

    def check_forward(self, x: torch.Tensor) -> None:
        """Once, on the first point: the model takes it and gives (1, num_classes) logits; else one clear error."""
        if self._forward_checked:
            return
        try:
            with torch.inference_mode():
                out = self.model(x.unsqueeze(0))
        except Exception as exc:  # noqa: BLE001  (any failure of the user's model on this input)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise RsbenchError(f"the model fails on one point of shape {tuple(x.shape)} (as a batch "
                               f"{(1, *x.shape)}): {first}; points must have the shape the model takes"
                               + ("" if self.input_shape else " (pass input_shape= to check it up front)")) from None
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, self.num_classes):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise RsbenchError(f"the model gives {shape} for a batch of one point, but num_classes="
                               f"{self.num_classes}: it must return logits of shape (batch, num_classes)")
        self._forward_checked = True

    def _rows(self, xs: Iterable[torch.Tensor], labels: Sequence[int] | None, indices: Sequence[int] | None,
              fields: Any) -> list[dict[str, Any]]:
        xs = self._points(xs)
        indices = list(range(len(xs))) if indices is None else [int(i) for i in indices]
        if len(indices) != len(xs) or (labels is not None and len(labels) != len(xs)):
            raise RsbenchError(f"{len(xs)} points but {len(indices)} indices"
                               + ("" if labels is None else f" and {len(labels)} labels"))
        if len(set(indices)) != len(indices):
            raise RsbenchError("indices repeat: each point needs its own noise stream")
        labels = None if labels is None else [self.check_label(label, j) for j, label in enumerate(labels)]
        rows = []
        for j, (x, i) in enumerate(zip(xs, indices, strict=True)):
            x = self.check_point(x, i)
            self.check_forward(x)
            t0 = time.perf_counter()
            row = {"idx": i, **fields(x, i)}
            if labels is not None:
                row.update(label=labels[j], correct=int(row["predict"] == labels[j]))
            rows.append({**row, "time_s": time.perf_counter() - t0})
        return rows

    def check_point(self, x: torch.Tensor, idx: int) -> torch.Tensor:
        """``x`` on the model's device, refused with one line if it is not a finite float32 image in [0, 1] of the
        point shape (``input_shape``, else the first point's)."""
        if not isinstance(x, torch.Tensor) or x.dtype != torch.float32:
            raise RsbenchError(f"point {idx}: expected a float32 tensor (C, H, W) in [0, 1], got {type(x).__name__}"
                               + (f" of dtype {x.dtype}" if isinstance(x, torch.Tensor) else "")
                               + ("; convert it with x.float() (noise is drawn and added in float32)"
                                  if isinstance(x, torch.Tensor) and x.is_floating_point() else ""))
        if self.input_shape is None:
            self.input_shape = tuple(x.shape)
        if tuple(x.shape) != self.input_shape:
            raise RsbenchError(f"point {idx}: shape {tuple(x.shape)}, but points have shape {self.input_shape}")
        if x.dim() < 1 or not torch.isfinite(x).all():
            raise RsbenchError(f"point {idx}: the input holds non-finite values (NaN or inf) or has no dimensions")
        if float(x.min()) < 0 or float(x.max()) > 1:
            raise RsbenchError(f"point {idx}: pixel values lie in [{float(x.min()):.3g}, {float(x.max()):.3g}], not "
                               "[0, 1]: pass images before normalisation; the model normalises them itself")
        return x.to(self.device)


def check_model(model: Any) -> None:
    """One clear error for what is not a model rsbench can run: not a module, weights on the meta device (none to
    run), or floating-point weights other than float32 (the network runs in float32, or under autocast)."""
    if not isinstance(model, nn.Module):
        raise RsbenchError(f"model must be a torch.nn.Module from inputs in [0, 1] to logits, got "
                           f"{type(model).__name__}")
    tensors = [*model.parameters(), *model.buffers()]
    if any(t.is_meta for t in tensors):
        raise RsbenchError("model is on the meta device: it has no weights to run; materialise and load them first "
                           "(model.to_empty(device=...) and load_state_dict)")
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in tensors if t.is_floating_point()} - {"float32"})
    if dtypes:
        raise RsbenchError(f"model has {', '.join(dtypes)} weights: rsbench runs the network in float32 (or under "
                           "autocast with precision='bf16' / 'fp16'); convert it with model.float()")


def check_num_classes(num_classes: Any) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise RsbenchError(f"num_classes={num_classes!r} is invalid: it must be an integer >= 2")
    return num_classes


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
