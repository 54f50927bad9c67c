"""Cached artefacts: built once under a lock, published by an atomic rename, never read half-built.

Invariants every cached artefact (default models, IDRS sigma networks, DSmooth perturbations and
covariances, decompressed or decoded datasets) keeps by going through :func:`cached`:

- *One builder.* The build runs while holding an exclusive ``fcntl.flock`` on ``<artefact>.lock``
  (local file systems and NFS with locking). Concurrent processes that need the same artefact block
  on the lock, then find it built and load it.
- *All or nothing.* The builder writes into a fresh temporary path beside the artefact
  (``.<name>.<host>-<pid>.<random>.tmp``); the result is fsynced and renamed into place. A killed build
  leaves only a temporary path, which the next write of the same artefact removes once its owner is
  dead: the artefact is never seen half-written, and killed writes do not pile up.
- *Keys are content, not places.* Callers name artefacts by a digest of what they depend on, never by
  absolute paths, so moving ``outputs_dir`` keeps every cache entry valid.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rsbench.errors import RsbenchError
from rsbench.log import log


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    paths = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for p in paths:
        with open(p, "rb") as fh:
            os.fsync(fh.fileno())


DISK_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
               errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
               errno.EPERM: "permission denied", errno.EFBIG: "the file-size limit was reached"}


def disk_error(exc: OSError, what: str) -> RsbenchError:
    """A one-line error for a failed write: full disk, quota, read-only file system, permissions."""
    reason = DISK_ERRNOS.get(exc.errno or 0, exc.strerror or str(exc))
    return RsbenchError(f"cannot write {what}: {reason}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return True


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove the temporary paths that killed writes of ``path`` left beside it (``.<name>.<host>-<pid>.*.tmp``
    of a process on this host that no longer runs); a live writer's, or another host's, are kept."""
    host, removed = socket.gethostname(), []
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(.+)-(\d+)\.[A-Za-z0-9_]+\.tmp")
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return removed
    for p in siblings:
        m = pattern.fullmatch(p.name)
        if m and m[1] == host and not _pid_alive(int(m[2])):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Publish ``path`` (a file or a folder) atomically: ``write(tmp)`` fills a fresh temporary path beside
    it, which is fsynced and renamed over ``path``. Readers see the old artefact or the new, never a part.
    Temporary paths left by killed writes of the same ``path`` are removed first."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{socket.gethostname()}-{os.getpid()}.", suffix=".tmp",
                                    dir=path.parent))
    except OSError as exc:
        raise disk_error(exc, str(path)) from exc
    target = tmp / path.name
    try:
        write(target)
        _fsync_tree(target)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)  # a folder cannot be renamed over a non-empty one; readers hold the lock
        os.replace(target, path)
        fsync_dir(path.parent)
    except (OSError, RuntimeError) as exc:
        interrupt = _interrupt_in(exc)
        if interrupt is not None:  # Ctrl-C or SIGTERM inside torch.save surfaces as a C++ RuntimeError
            raise interrupt from None
        cause = exc if isinstance(exc, OSError) else exc.__context__  # torch.save wraps the OSError
        if not isinstance(cause, OSError):
            raise
        raise disk_error(cause, str(path)) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _interrupt_in(exc: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt (or its Terminated subclass) behind ``exc``'s chain of causes, if any."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def torch_writer(obj: Any) -> Callable[[Path], None]:
    """A ``write`` for :func:`atomic_write` that ``torch.save``s ``obj`` through a Python file object, so a
    failed write (full disk, file-size limit) raises :class:`OSError` with its errno, not a C++ RuntimeError."""
    def write(path: Path) -> None:
        import torch

        with open(path, "wb") as fh:
            torch.save(obj, fh)

    return write


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """``json.dump`` through :func:`atomic_write`: a torn JSON side file can no longer happen."""
    return atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=1, sort_keys=True)))


def holder_text(path: Path, patience: float = 1.0) -> str:
    """Who holds a lock file, as its holder wrote it ("pid 123 on host").

    A holder writes its pid just after taking the lock, so a reader that lost the race by microseconds
    may find the file empty or half-written: it reads again for up to ``patience`` seconds.
    """
    deadline = time.monotonic() + patience
    while True:
        try:
            info = json.loads(path.read_text() or "{}")
        except OSError:
            return "another process"
        except ValueError:
            info = {}
        if info or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}" if info else "another process"


@contextmanager
def file_lock(path: str | Path, blocking: bool = True, wait_message: str | None = None,
              remove: bool = False) -> Iterator[Path]:
    """Hold an exclusive ``flock`` on ``path`` for the block; the holder's pid and host are written into it.

    ``blocking=False`` raises :class:`BlockingIOError` at once when another process holds it. The kernel
    releases the lock when its holder dies, so a killed process never leaves a stale lock behind.
    ``remove=True`` deletes the lock file on release, while still holding it; every taker checks, once it holds
    the lock, that the file it locked is still the one at ``path`` (and starts over if not), so deleting it
    never lets two processes in at once.
    """
    path = Path(path)
    waited = False
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise disk_error(exc, str(path)) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not blocking:
                os.close(fd)
                raise
            if wait_message and not waited:
                log.info("%s (held by %s)", wait_message, holder_text(path))
                waited = True
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # its holder removed it while we waited: lock the file that is there now
    try:
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode()
        os.pwrite(fd, record, 0)  # write, then cut: the file is never empty once a holder has written
        os.ftruncate(fd, len(record))
        yield path
    finally:
        if remove:
            try:
                path.unlink()
            except OSError:
                pass
        os.close(fd)  # closing the descriptor releases the lock


def cached(path: str | Path, build: Callable[[Path], Any], what: str) -> Path:
    """``path`` (file or folder), built by ``build(tmp)`` under a lock if it does not exist yet.

    ``build`` writes the artefact at the temporary path it is given; :func:`atomic_write` publishes it.
    Every process that needs the artefact may call this at once: one builds, the others wait and reuse.
    """
    path = Path(path)
    if path.exists():
        return path
    with file_lock(path.with_name(path.name + ".lock"), wait_message=f"waiting for another process to build {what}",
                   remove=True):  # built or failed, no lock file is left beside the artefact
        if not path.exists():  # built while we waited
            atomic_write(path, build)
    return path
