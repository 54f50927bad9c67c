"""Progress bars: live on a terminal, a line every 30 s in a log file (SLURM, CI)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def progress(iterable: Iterable[Any] | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr whose refresh interval suits where stderr goes."""
    kwargs.setdefault("mininterval", 0.2 if sys.stderr.isatty() else 30.0)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
