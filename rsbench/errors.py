"""The one exception type the CLI turns into a one-line error message."""

from __future__ import annotations

import math


class RsbenchError(Exception):
    """A user-facing error: bad config value, bad input, bad checkpoint. Printed as one line."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`RsbenchError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise RsbenchError(message)


def check_positive(name: str, value: float) -> float:
    """``value`` must be a finite number > 0."""
    require(
        isinstance(value, (int, float)) and math.isfinite(value) and value > 0,
        f"{name}={value!r} is invalid: it must be a finite number > 0",
    )
    return float(value)


def check_probability(name: str, value: float) -> float:
    """``value`` must lie strictly inside (0, 1)."""
    require(
        isinstance(value, (int, float)) and 0.0 < value < 1.0,
        f"{name}={value!r} is invalid: it must lie strictly between 0 and 1",
    )
    return float(value)


def check_count(name: str, value: int, minimum: int = 1) -> int:
    """``value`` must be an integer >= ``minimum``."""
    require(
        isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
        f"{name}={value!r} is invalid: it must be an integer >= {minimum}",
    )
    return int(value)
