"""``python scripts/bench <measurement> [options]``: every measurement in docs/PERFORMANCE.md, one command each.

``python scripts/bench`` lists the measurements; ``python scripts/bench <measurement> --help`` gives its options.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

# run as a directory, sys.path[0] is this folder: replace it by its parent so that the measurements import as
# ``bench.<name>`` and none of their names (profile, train) shadows a standard-library or rsbench module
sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench import COMMANDS  # noqa: E402


def usage() -> str:
    return ("usage: python scripts/bench <measurement> [options]\n\nmeasurements:\n"
            + "".join(f"  {name:<11} {text}\n" for name, (_, text) in COMMANDS.items())
            + "\n'python scripts/bench <measurement> --help' lists its options; `make bench` runs certify, train"
              " and allocator.\n")


def main(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(), end="")
        return
    name = argv[0]
    if name not in COMMANDS:
        from rsbench.config_check import refuse_unknown

        refuse_unknown("bench", "measurement", name, list(COMMANDS))
    importlib.import_module(f"bench.{COMMANDS[name][0]}").main(argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
