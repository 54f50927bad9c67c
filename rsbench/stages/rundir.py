"""A stage's run dir: one writer, records written only once the run is accepted, and tidying after a refusal.

Hydra is told to write nothing into a run dir (``hydra.output_subdir: null``, no log file on the root logger,
``conf/_common.yaml``). The stage first takes the run dir's lock and checks that the dir may hold this run (for
certify and predict: the fingerprint of the rows already there); only then does :func:`accept` write what
Hydra would have written (``.hydra/config.yaml``, ``hydra.yaml``, ``overrides.yaml``) and open ``<stage>.log``,
with every log record held in memory until then. A run refused by a finished run's dir therefore leaves that
dir's records byte for byte as they were.
"""

from __future__ import annotations

import logging
import logging.handlers
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from rsbench.cache import atomic_write, file_lock, holder_text
from rsbench.errors import RsbenchError

LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # Hydra's job log format

# folders that existed before this command (the CLI records the hydra.run.dir / hydra.sweep.dir it was given):
# a refused run empties what it wrote there but never removes the folder itself
USER_DIRS: set[Path] = set()


class RunDirInUse(RsbenchError):
    """The run dir's stage lock is held by another process: this run was refused and must touch nothing there."""


@contextmanager
def run_dir_lock(out: Path, stage: str) -> Iterator[None]:
    """One writer per run dir: an exclusive lock on ``<out>/.<stage>.lock`` for the whole stage.

    A second process (a duplicate launch, a SLURM re-launch while the old task still runs) fails at once
    with the holder's pid and host instead of interleaving rows. The kernel drops the lock if its holder dies.
    """
    path = out / f".{stage}.lock"
    try:
        with file_lock(path, blocking=False):
            yield
    except BlockingIOError:
        raise RunDirInUse(f"run dir {out} is in use by another rsbench {stage} ({holder_text(path)}); wait for it "
                          "to finish, or choose another hydra.run.dir") from None


class RunRecords:
    """This process's stage run: log records held in memory until :meth:`accept` opens ``<stage>.log``."""

    def __init__(self, stage: str, cfg: DictConfig) -> None:
        self.stage, self.cfg = stage, cfg
        self.accepted: set[Path] = set()
        self.inner: dict[Path, tuple[DictConfig, list[str], list[str] | None]] = {}
        self.held = logging.handlers.MemoryHandler(capacity=1 << 30, flushLevel=logging.CRITICAL + 1)
        self.file: logging.Handler | None = None
        logging.getLogger().addHandler(self.held)

    def plan_inner(self, out: Path, cfg: DictConfig, overrides: list[str], shared: list[str] | None = None) -> None:
        """A run inside the job's dir (one certificate of a shared sampling pass): ``cfg`` is the config it has
        alone, ``overrides`` the command-line overrides that re-run it alone, ``shared`` those of the pass that
        produced it (``.hydra/shared_pass.yaml``); written when it is accepted."""
        self.inner[Path(out).resolve()] = (cfg, list(overrides), None if shared is None else list(shared))

    def accept(self, out: Path) -> None:
        """``out`` may hold this run: write its records (once) and the Hydra job's (its records, its log)."""
        out = Path(out).resolve()
        job = Path(HydraConfig.get().runtime.output_dir).resolve() if HydraConfig.initialized() else None
        if out in self.inner and out not in self.accepted:
            self.accepted.add(out)
            cfg, overrides, shared = self.inner[out]
            _write_yaml(out / ".hydra" / "config.yaml", cfg)
            _write_yaml(out / ".hydra" / "overrides.yaml", OmegaConf.create(overrides))
            if shared is not None:
                _write_yaml(out / ".hydra" / "shared_pass.yaml", OmegaConf.create({
                    "command": "rsbench certify " + " ".join(shared),
                    "note": "this run's rows came from one sampling pass shared with the other certificates of "
                            "this command; overrides.yaml re-runs this certificate alone to the same rows (time_s "
                            "aside)"}))
        if job is None or job in self.accepted:
            return
        self.accepted.add(job)
        _write_yaml(job / ".hydra" / "config.yaml", self.cfg)
        _write_yaml(job / ".hydra" / "hydra.yaml", HydraConfig.instance().cfg)
        _write_yaml(job / ".hydra" / "overrides.yaml", HydraConfig.get().overrides.task)
        self.file = logging.FileHandler(job / f"{self.stage}.log", encoding="utf-8")
        self.file.setFormatter(logging.Formatter(LOG_FORMAT))
        logging.getLogger().addHandler(self.file)
        self.held.setTarget(self.file)
        self.held.flush()
        self._stop_holding()

    def _stop_holding(self) -> None:
        logging.getLogger().removeHandler(self.held)
        self.held.setTarget(None)  # type: ignore[arg-type]
        self.held.buffer.clear()

    def close(self) -> None:
        """End of the stage: stop holding records (those of a refused run are dropped) and close the log file."""
        self._stop_holding()
        if self.file is not None:
            logging.getLogger().removeHandler(self.file)
            self.file.close()
            self.file = None


_CURRENT: list[RunRecords] = []


def current() -> RunRecords | None:
    """The records of the stage this process is running (None outside a stage)."""
    return _CURRENT[-1] if _CURRENT else None


@contextmanager
def stage_records(stage: str, cfg: DictConfig) -> Iterator[RunRecords]:
    records = RunRecords(stage, cfg)
    _CURRENT.append(records)
    try:
        yield records
    finally:
        _CURRENT.remove(records)
        records.close()


def accept(out: Path) -> None:
    """:meth:`RunRecords.accept` for the running stage (nothing outside one)."""
    records = current()
    if records is not None:
        records.accept(out)


def _write_yaml(path: Path, node: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = OmegaConf.to_yaml(node)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def take_back_bookkeeping(out: Path, stage: str, outputs_root: Path) -> None:
    """After a refused run: if ``out`` holds nothing but bookkeeping (no result row), remove it, or empty it if the
    user made it (hydra.run.dir=). Done under the stage lock, taken without waiting: a run dir another process has
    meanwhile started writing in is left as it is, and only the entries listed once, under the lock, are removed."""
    if not out.is_dir():
        return
    try:
        with file_lock(out / f".{stage}.lock", blocking=False):
            entries = list(out.iterdir())
            if not all(is_bookkeeping(p, stage) for p in entries):
                return
            if out.resolve() in USER_DIRS:  # the user made it: take back only what we wrote
                for p in entries:
                    if p.is_dir():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink(missing_ok=True)
                return
            shutil.rmtree(out, ignore_errors=True)
    except BlockingIOError:
        return
    _remove_empty_parents(out, outputs_root)


def is_bookkeeping(path: Path, stage: str) -> bool:
    """Files a run dir holds before its first result row: Hydra's config and log, our fingerprint and plan,
    and a results CSV with nothing but its header."""
    if path.name in {".hydra", f"{stage}.log", f"{stage}.fingerprint.json", f"{stage}.plan.json", f".{stage}.lock"}:
        return True
    if path.name == f"{stage}.csv":
        return len(path.read_bytes().splitlines()) <= 1
    return False


def _remove_empty_parents(path: Path, root: Path) -> None:
    """Remove now-empty folders between ``path`` and ``root`` (exclusive) that a failed run created."""
    root = root.resolve()
    parent = path.resolve().parent
    while (parent != root and root in parent.parents and parent.is_dir() and parent not in USER_DIRS
           and not any(parent.iterdir())):
        parent.rmdir()
        parent = parent.parent
