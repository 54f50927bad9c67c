"""Several test points per forward batch (``certify.points_per_batch``).

k test points are certified concurrently, one thread each, and their work is pooled: a pooled call blocks
until every thread still working has submitted its item (or finished); then the calls are grouped by key
and each group runs once, as one batched call over its items in point order, and every thread gets its own
result back. The samplers pool whole Monte Carlo requests (``class_counts_many``: one noise kernel, one
forward stream and one count for all the points of a group); single forward calls (the clean check, SRA's
margins) pool by concatenation. Noise is still drawn per point from its own seeded blocks, so a row is
what one point at a time gives whenever the model's output for a sample does not depend on the other rows
of its batch (the same condition as for ``certify.batch``; tests/test_multipoint.py checks it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch


class ForwardPool:
    """Pools the forward calls of concurrent point evaluations into one batch per function."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._local = threading.local()
        self._active = 0
        self._pending: dict[int, tuple[Hashable, Callable[[list[Any]], list[Any]], Any]] = {}
        self._results: dict[int, Any] = {}

    def call(self, key: Hashable, batched: Callable[[list[Any]], list[Any]], item: Any) -> Any:
        """``batched([item])[0]``, pooled when called from a pool thread: calls with equal ``key`` from the
        threads that are waiting together run as one ``batched(items)`` (items in point order), which must
        return one result per item. Outside a pool thread it runs at once on ``[item]``."""
        slot = getattr(self._local, "slot", None)
        return batched([item])[0] if slot is None else self._submit(slot, key, batched, item)

    def wrap(self, fn: Callable[[torch.Tensor], torch.Tensor],
             direct: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """``fn`` pooled: called from a pool thread, its input joins the others' and ``fn`` runs on their
        concatenation; called from any other thread, ``direct`` (default ``fn``) runs on the input itself."""
        direct = direct or fn

        def batched(xs: list[torch.Tensor]) -> list[torch.Tensor]:
            return list(torch.split(fn(_concat(xs)), [len(x) for x in xs]))

        def pooled(x: torch.Tensor) -> torch.Tensor:
            slot = getattr(self._local, "slot", None)
            return direct(x) if slot is None else self._submit(slot, ("forward", id(fn)), batched, x)

        return pooled

    def _submit(self, slot: int, key: Hashable, batched: Callable[[list[Any]], list[Any]], item: Any) -> Any:
        with self._cond:
            self._pending[slot] = (key, batched, item)
            self._run_if_all_waiting()
            while slot not in self._results:
                self._cond.wait()
            out = self._results.pop(slot)
        if isinstance(out, BaseException):
            raise out
        return out

    def _run_if_all_waiting(self) -> None:
        """With the lock held: once every active thread waits, run each group of equal keys as one batched call."""
        if not self._pending or len(self._pending) < self._active:
            return
        pending, self._pending = self._pending, {}
        groups: dict[Hashable, list[int]] = {}
        for slot in sorted(pending):
            groups.setdefault(pending[slot][0], []).append(slot)
        for slots in groups.values():
            batched, items = pending[slots[0]][1], [pending[s][2] for s in slots]
            try:
                self._results.update(zip(slots, batched(items), strict=True))
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
