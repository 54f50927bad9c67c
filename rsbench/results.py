"""Results CSVs that are appended and flushed row by row, and resumed after a kill.

A run killed mid-write can leave a partial last line; it is dropped on reopening, so the resumed
file has no lost and no duplicated rows.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from rsbench.cache import write_json_atomic
from rsbench.errors import RsbenchError, require


def _format(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)  # full precision, round-trips exactly
    return str(value)


def format_row(row: Mapping[str, Any], columns: Sequence[str]) -> str:
    """One CSV line (with its newline) of ``row``'s ``columns``; floats at full precision."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([_format(row[c]) for c in columns])
    return buf.getvalue()


class ResultsCSV:
    """An append-only CSV keyed by column ``key``; :meth:`open` returns the keys already written."""

    def __init__(self, path: str | Path, columns: Sequence[str], key: str = "idx") -> None:
        self.path = Path(path)
        self.columns = tuple(columns)
        self.key = key
        self._fh: io.TextIOWrapper | None = None

    def open(self) -> set[int]:
        """Repair a torn last line, validate every row and return the set of keys already present."""
        done: set[int] = set()
        if self.path.exists():
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):  # a write cut short by a kill or a power loss
                cut = data.rfind(b"\n") + 1
                with open(self.path, "r+b") as fh:
                    fh.truncate(cut)
                data = data[:cut]
            if data:
                header, rows = parse_rows(self.path, data, self.key)
                if header != self.columns:
                    raise RsbenchError(f"{self.path} has columns {list(header)}, expected {list(self.columns)}; "
                                       "it belongs to another method or version; use a new run dir")
                done = set(rows)
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
        self._fh.write(format_row(row, self.columns))
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


def _int(v: str) -> int:
    return int(v)


def _finite(v: str) -> float:
    x = float(v)
    if not math.isfinite(x):
        raise ValueError("not finite")
    return x


def _bool(v: str) -> bool:
    if v not in ("True", "False"):
        raise ValueError("not True/False")
    return v == "True"


def _optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    return lambda v: None if v in ("", "None") else parse(v)  # rows write None as "None" (soft smoothing's count)


# The types of the columns rsbench writes (others are free text); a resumed or merged file must match them.
SCHEMA: dict[str, Callable[[str], Any]] = {
    "idx": _int, "epoch": _int, "label": _int, "predict": _int, "correct": _int, "n0": _int, "n": _int,
    "n_used": _int, "count": _optional(_int), "radius": _finite, "time_s": _finite, "p_lower": _optional(_finite),
    "alpha": _finite, "sound": _bool,
}


def parse_rows(path: Path, data: bytes, key: str = "idx") -> tuple[tuple[str, ...], dict[int, str]]:
    """(header, {key: line}) of a results CSV's complete lines, every row checked against its header and
    :data:`SCHEMA`: the field count, the types, a non-negative unique key. Anything else is refused with
    its line number (edited or damaged rows must never be counted as done)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise RsbenchError(f"{path}, line {line}: not UTF-8 text; the file is damaged") from None
    lines = text.splitlines(keepends=True)
    header = tuple(next(csv.reader([lines[0]])))
    require(key in header, f"{path}, line 1: the header {list(header)} has no {key!r} column; the file is damaged")
    at = header.index(key)
    rows: dict[int, str] = {}
    for number, line in enumerate(lines[1:], start=2):
        fields = next(csv.reader([line]), [])
        problem = None
        if "\x00" in line:
            problem = "NUL bytes (what a power loss leaves)"
        elif len(fields) != len(header):
            problem = f"{len(fields)} fields, the header has {len(header)}"
        else:
            for name, value in zip(header, fields, strict=True):
                try:
                    SCHEMA.get(name, str)(value)
                except ValueError:
                    problem = f"{name}={value!r} is not a valid value"
                    break
            else:
                if int(fields[at]) < 0:
                    problem = f"{key}={fields[at]} is negative"
                elif int(fields[at]) in rows:
                    problem = f"{key}={fields[at]} appears twice"
        if problem:
            raise RsbenchError(f"{path}, line {number}: {problem}; the file is damaged or was edited. Fix or delete "
                               "that line (re-running recomputes missing rows), or start afresh with overwrite=true")
        rows[int(fields[at])] = line
    return header, rows


def read_json(path: Path, what: str) -> Any:
    """A JSON side file; a damaged one is a one-line error naming it."""
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise RsbenchError(f"{path} ({what}) is damaged: {exc}") from None


# (section, key) pairs fingerprints gained after runs were made: a run dir whose fingerprint predates one resumes,
# and its fingerprint gains the field (model.sha256: the checkpoint's digest, recorded since issue 42)
ADDED_FIELDS = (("model", "sha256"),)


def _without_added(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """``new`` less the :data:`ADDED_FIELDS` that ``old`` lacks (what ``old`` would have recorded of ``new``)."""
    trimmed = json.loads(json.dumps(new))
    for section, key in ADDED_FIELDS:
        if isinstance(old.get(section), dict) and key not in old[section] and isinstance(trimmed.get(section), dict):
            trimmed[section].pop(key, None)
    return trimmed


def fingerprint_differs(path: str | Path, fingerprint: Mapping[str, Any]) -> list[str]:
    """The top-level keys in which the fingerprint stored at ``path`` differs from ``fingerprint`` (compared as
    JSON; [] when none is stored or they agree)."""
    path = Path(path)
    if not path.exists():
        return []
    old = read_json(path, "the configuration its rows came from; certify.overwrite=true starts afresh")
    new = _without_added(json.loads(json.dumps(fingerprint)), old)
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def partial_differs(path: str | Path, partial: Mapping[str, Any]) -> list[str]:
    """:func:`fingerprint_differs` for the part of a fingerprint known before the model is loaded: the keys of
    ``partial`` that the stored one differs in, its ``model`` entry compared on the keys ``partial`` gives."""
    path = Path(path)
    if not path.exists():
        return []
    old = read_json(path, "the configuration its rows came from; certify.overwrite=true starts afresh")
    new = json.loads(json.dumps(partial))
    diff = [k for k in new if k != "model" and old.get(k) != new[k]]
    stored = old.get("model") if isinstance(old.get("model"), dict) else {}
    if any(stored.get(k) != v for k, v in new.get("model", {}).items()):
        diff.append("model")
    return sorted(diff)


def refuse_other_configuration(path: Path, diff: list[str]) -> None:
    if diff:
        raise RsbenchError(f"{path.parent} holds results of a different configuration (differs in "
                           f"{', '.join(diff)}); use another hydra.run.dir or certify.overwrite=true")


def check_fingerprint(path: str | Path, fingerprint: Mapping[str, Any], overwrite: bool) -> None:
    """Refuse to resume a run dir whose results came from a different configuration.

    ``path`` is a JSON sidecar holding the settings the rows depend on. With ``overwrite`` an
    existing results file is started afresh instead. A stored fingerprint that lacks only fields added since
    (:data:`ADDED_FIELDS`) is accepted and rewritten with them.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        refuse_other_configuration(path, fingerprint_differs(path, fingerprint))
        if read_json(path, "the configuration its rows came from") == json.loads(json.dumps(fingerprint)):
            return
    write_json_atomic(path, fingerprint)


COHEN_HEADER = ("idx", "label", "predict", "radius", "correct", "time")  # Cohen et al.'s per-image result files
REQUIRED = ("idx", "label", "predict", "radius", "correct")


_TIMEDELTA = re.compile(r"^(?:(\d+) days?, )?(\d+):(\d\d):(\d\d(?:\.\d+)?)$")


def timedelta_seconds(text: str) -> str:
    """Cohen's code writes each point's time as str(datetime.timedelta) ('0:00:03.003228', '1 day, 2:00:00');
    later files write seconds. Either way, seconds as text; anything else unchanged (validation then names it)."""
    m = _TIMEDELTA.match(text)
    if not m:
        return text
    days, hours, minutes, secs = m.groups()
    return repr(int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(secs))


def _cohen_as_csv(data: bytes) -> bytes:
    """Cohen's TSV as rsbench CSV text: commas, ``time`` -> ``time_s`` in seconds."""
    lines = data.decode("utf-8", "replace").splitlines()
    out = [",".join(COHEN_HEADER[:-1] + ("time_s",))]
    for line in lines[1:]:
        fields = line.split("\t")
        if len(fields) == len(COHEN_HEADER):
            fields[-1] = timedelta_seconds(fields[-1])
        out.append(",".join(fields))
    return ("\n".join(out) + "\n").encode()


def is_cohen_tsv(path: str | Path) -> bool:
    """True for Cohen et al.'s per-image result format (tab-separated ``idx label predict radius correct time``)."""
    with open(path, "rb") as fh:
        first = fh.readline().decode("utf-8", "replace").rstrip("\r\n")
    return tuple(first.split("\t")) == COHEN_HEADER


def read_results(path: str | Path) -> pd.DataFrame:
    """A certify results file as a DataFrame, every row validated (:func:`parse_rows`): rsbench's
    ``certify.csv``, or Cohen et al.'s per-image TSV (as their repository and later papers publish them; its
    ``time`` becomes ``time_s``, ``source`` says where the rows come from). No rows, a damaged row or a
    missing column is a one-line :class:`RsbenchError` naming the file (and the line)."""
    path = Path(path)
    if not path.is_file():
        raise RsbenchError(f"{path} does not exist")
    data = path.read_bytes()
    cohen = is_cohen_tsv(path)
    if cohen:  # the same validation as our own rows: re-read as CSV text
        data = _cohen_as_csv(data)
    if not data.strip():
        raise RsbenchError(f"{path} is empty: it holds no header and no rows")
    header, rows = parse_rows(path, data if data.endswith(b"\n") else data + b"\n")
    missing = [c for c in REQUIRED if c not in header]
    require(not missing, f"{path} lacks columns {missing}; is it a certify.csv or Cohen et al.'s per-image TSV?")
    require(len(rows) > 0, f"{path} holds no rows (only its header): nothing to plot or compare yet")
    df = pd.read_csv(io.StringIO(data.decode("utf-8")))
    if cohen:
        df["source"] = "cohen2019 per-image file"
    return df
