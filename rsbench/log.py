"""The package's one logger. Lower layers (data, methods, cache) log through it without importing the stages."""

from __future__ import annotations

import logging

log = logging.getLogger("rsbench")
