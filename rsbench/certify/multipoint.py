"""Several test points per forward batch (``certify.points_per_batch``).

k test points are certified concurrently, one thread each, and their forward passes are pooled: a call
to a pooled function blocks until every thread still working has submitted its input (or finished), then
each function runs once on the concatenation of its inputs, in point order, and every thread gets its
own rows back. Noise is still drawn per point from its own seeded blocks, so a row is what one point at a
time gives whenever the model's output for a sample does not depend on the other rows of its batch (the
same condition as for ``certify.batch``; tests/test_multipoint.py checks it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch


class ForwardPool:
    """Pools the forward calls of concurrent point evaluations into one batch per function."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._local = threading.local()
        self._active = 0
        self._pending: dict[int, tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]] = {}
        self._results: dict[int, Any] = {}

    def wrap(self, fn: Callable[[torch.Tensor], torch.Tensor],
             direct: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """``fn`` pooled: called from a pool thread, its input joins the others' and ``fn`` runs on their
        concatenation; called from any other thread, ``direct`` (default ``fn``) runs on the input itself."""
        direct = direct or fn

        def pooled(x: torch.Tensor) -> torch.Tensor:
            slot = getattr(self._local, "slot", None)
            return direct(x) if slot is None else self._submit(slot, fn, x)

        return pooled

    def _submit(self, slot: int, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        with self._cond:
            self._pending[slot] = (fn, x)
            self._run_if_all_waiting()
            while slot not in self._results:
                self._cond.wait()
            out = self._results.pop(slot)
        if isinstance(out, BaseException):
            raise out
        return out

    def _run_if_all_waiting(self) -> None:
        """With the lock held: once every active thread waits, run each function on its inputs together."""
        if not self._pending or len(self._pending) < self._active:
            return
        pending, self._pending = self._pending, {}
        by_fn: dict[int, list[int]] = {}
        for slot in sorted(pending):
            by_fn.setdefault(id(pending[slot][0]), []).append(slot)
        for slots in by_fn.values():
            fn, xs = pending[slots[0]][0], [pending[s][1] for s in slots]
            try:
                out = fn(_concat(xs))
                sizes = [len(x) for x in xs]
                self._results.update(zip(slots, torch.split(out, sizes), strict=True))
            except BaseException as exc:  # every waiting thread sees the failure, none waits forever
                self._results.update((s, exc) for s in slots)
        self._cond.notify_all()

    def evaluate(self, items: Sequence[tuple[torch.Tensor, int]],
                 evaluate: Callable[[torch.Tensor, int], dict[str, Any]]) -> list[dict[str, Any]]:
        """``evaluate(x, idx)`` for every item, concurrently, their pooled forwards batched; rows in item order.
        The first failure (in item order) is raised once every thread has stopped."""
        with self._cond:
            self._active = len(items)

        def work(slot: int, x: torch.Tensor, idx: int) -> dict[str, Any]:
            self._local.slot = slot
            try:
                return evaluate(x, idx)
            finally:
                self._local.slot = None
                with self._cond:
                    self._active -= 1
                    self._run_if_all_waiting()

        with ThreadPoolExecutor(max_workers=len(items), thread_name_prefix="rsbench-point") as ex:
            futures = [ex.submit(work, slot, x, idx) for slot, (x, idx) in enumerate(items)]
        return [f.result() for f in futures]


def _concat(xs: list[torch.Tensor]) -> torch.Tensor:
    """The inputs stacked along the batch, in the memory order they came in (channels-last stays so)."""
    out = torch.cat(xs)
    first = xs[0]
    if first.dim() == 4 and not first.is_contiguous() and first.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)
    return out


class PooledModel:
    """A model whose calls (and ``forward_inplace``) go through a :class:`ForwardPool`. A pooled input is a
    fresh concatenation, so the pooled forward may normalise it in place (``forward_inplace``); a call from
    outside the pool never touches its input."""

    def __init__(self, model: torch.nn.Module, pool: ForwardPool) -> None:
        self.model = model
        self._call = pool.wrap(getattr(model, "forward_inplace", model), model)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._call(x)

    forward_inplace = __call__

    def __getattr__(self, name: str) -> Any:  # everything else (modules(), parameters, ...) from the model
        return getattr(self.model, name)
