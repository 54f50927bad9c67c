"""Test helper: ``python tests/kill_during_save.py N <rsbench args>`` runs rsbench and SIGKILLs it in the middle
of its N-th torch save (a training checkpoint or model.pt), after half a file is written: what a kill, a power
loss or a full node leaves behind."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from rsbench import cache, cli
from rsbench.models import checkpoint
from rsbench.training import state

_saves = 0
_kill_at = int(sys.argv[1])


def _dying_writer(obj: Any):
    write = cache.torch_writer(obj)

    def dying(path: Path) -> None:
        global _saves
        _saves += 1
        if _saves == _kill_at:
            write(path)
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        write(path)

    return dying


if __name__ == "__main__":
    state.torch_writer = checkpoint.torch_writer = _dying_writer
    cli.main(sys.argv[2:])
