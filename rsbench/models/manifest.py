"""Published checkpoints and their manifest: a file's sha256 is checked before its weights are trusted.

A folder of published models (``outputs/published/models/``) holds ``MANIFEST.json``:
``{"format": "rsbench-manifest/1", "models": {<file name>: {"sha256", "command", "commit", "device",
"clean_acc", "noisy_acc", "wall_s", ...}}}``. Loading any checkpoint whose folder has a manifest that names
it verifies its sha256 first: a modified, truncated or swapped file is refused with one line, so a number in
the docs can only be reproduced from the exact model behind it. The manifest is looked up beside the *real*
file (symlinks resolved), so a link elsewhere to a published name cannot skip the check.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from rsbench.cache import write_json_atomic
from rsbench.errors import RsbenchError

MANIFEST = "MANIFEST.json"
FORMAT = "rsbench-manifest/1"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(folder: str | Path) -> dict[str, dict[str, Any]]:
    """{file name: entry} of ``folder/MANIFEST.json``; {} where there is none; a damaged one is an error."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RsbenchError(f"{path} is damaged ({exc}); restore it from the repository") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("models"), dict):
        raise RsbenchError(f"{path} is not an rsbench manifest (expected format {FORMAT!r})")
    return data["models"]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_entry(path: str | Path) -> tuple[Path, dict[str, Any] | None]:
    """(the real file behind ``path``, symlinks resolved; the manifest entry that names it there, or None)."""
    real = Path(path).resolve()
    return real, read_manifest(real.parent).get(real.name)


def check_digest(path: str | Path, digest: str) -> dict[str, Any] | None:
    """The manifest entry of checkpoint ``path`` (looked up beside its real file) after checking that the bytes
    read from it hash to ``digest``; None when no manifest names it. A mismatch is refused with one line."""
    real, entry = manifest_entry(path)
    if entry is None:
        return None
    if digest != entry.get("sha256"):
        via = "" if real == Path(path).absolute() else f" (through the link {path})"
        raise RsbenchError(f"checkpoint {real}{via} does not match its manifest ({real.parent / MANIFEST}): sha256 "
                           f"{digest[:16]}... but the manifest says {str(entry.get('sha256'))[:16]}...; the file was "
                           "modified or damaged: restore it from the repository")
    return entry


def verify_published(path: str | Path) -> dict[str, Any] | None:
    """The manifest entry of checkpoint ``path`` after checking its sha256; None when no manifest names it."""
    return check_digest(path, sha256_file(path))


def find_by_digest(digest: str, folders: list[Path]) -> tuple[Path, dict[str, Any]] | None:
    """(file, entry) of the first manifest among ``folders`` that records ``digest``; None when none does."""
    for folder in folders:
        for name, entry in read_manifest(folder).items():
            if entry.get("sha256") == digest:
                return folder / name, entry
    return None


def add_to_manifest(folder: str | Path, name: str, entry: dict[str, Any]) -> Path:
    """Record ``folder/name`` (its sha256 computed here) with ``entry`` in the folder's manifest (atomic)."""
    folder = Path(folder)
    models = read_manifest(folder)
    models[name] = {**entry, "sha256": sha256_file(folder / name)}
    return write_json_atomic(folder / MANIFEST, {"format": FORMAT, "models": dict(sorted(models.items()))})
