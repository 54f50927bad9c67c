"""Results CSVs that are appended and flushed row by row, and resumed after a kill.

A run killed mid-write can leave a partial last line; it is dropped on reopening, so the resumed
file has no lost and no duplicated rows.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rsbench.errors import RsbenchError


def _format(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)  # full precision, round-trips exactly
    return str(value)


class ResultsCSV:
    """An append-only CSV keyed by column ``key``; :meth:`open` returns the keys already written."""

    def __init__(self, path: str | Path, columns: Sequence[str], key: str = "idx") -> None:
        self.path = Path(path)
        self.columns = tuple(columns)
        self.key = key
        self._fh: io.TextIOWrapper | None = None

    def open(self) -> set[int]:
        """Repair a torn last line, check the header and return the set of keys already present."""
        done: set[int] = set()
        if self.path.exists():
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):
                cut = data.rfind(b"\n") + 1
                with open(self.path, "r+b") as fh:
                    fh.truncate(cut)
                data = data[:cut]
            rows = list(csv.reader(io.StringIO(data.decode())))
            if rows:
                if tuple(rows[0]) != self.columns:
                    raise RsbenchError(f"{self.path} has columns {rows[0]}, expected {list(self.columns)}; "
                                       "it belongs to another method or version; use a new run dir")
                key = self.columns.index(self.key)
                for r in rows[1:]:
                    done.add(int(r[key]))
                if len(done) != len(rows) - 1:
                    raise RsbenchError(f"{self.path} holds duplicated {self.key} rows; it is corrupt")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", newline="")
        if not self.path.stat().st_size:
            self._fh.write(",".join(self.columns) + "\n")
            self._flush()
        return done

    def append(self, row: Mapping[str, Any]) -> None:
        """Write one row (all columns required), flush it and fsync it."""
        if self._fh is None:
            raise RuntimeError("ResultsCSV.append before open()")
        missing = [c for c in self.columns if c not in row]
        if missing:
            raise RuntimeError(f"row lacks columns {missing}")
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow([_format(row[c]) for c in self.columns])
        self._fh.write(buf.getvalue())
        self._flush()

    def _flush(self) -> None:
        assert self._fh is not None
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> ResultsCSV:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_fingerprint(path: str | Path, fingerprint: Mapping[str, Any], overwrite: bool) -> None:
    """Refuse to resume a run dir whose results came from a different configuration.

    ``path`` is a JSON sidecar holding the settings the rows depend on. With ``overwrite`` an
    existing results file is started afresh instead.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        old = json.loads(path.read_text())
        if old != json.loads(json.dumps(fingerprint)):
            diff = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
            raise RsbenchError(f"{path.parent} holds results of a different configuration (differs in "
                               f"{', '.join(diff)}); use another hydra.run.dir or certify.overwrite=true")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fingerprint, indent=1, sort_keys=True))
