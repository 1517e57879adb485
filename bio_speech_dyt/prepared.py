"""Prepared-data folders (every ``bsd prepare``: hg38, GenomicBenchmarks, LibriSpeech): staging,
completion marker, and the checks loaders run.

A prepare writes every file into a staging folder inside ``out`` (validating as it goes), then
drops a ``.publishing`` marker, removes ``stats.json``, moves the finished files into ``out`` with
``os.replace``, writes ``stats.json`` last and then removes the marker. ``stats.json`` is the
completion marker: a prepare killed while publishing leaves a folder that loaders refuse
(``NotPreparedError``) until a re-run completes it, and one that fails validation leaves the
previous complete output untouched.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from bio_speech_dyt.io import write_json

STATS = "stats.json"
PUBLISHING = ".publishing"  # present from the first move until stats.json is written
_STAGING_PREFIX = ".staging-"


class DataError(ValueError):
    """Bad input data; the message names the file and, where it applies, the record or line."""


class NotPreparedError(FileNotFoundError):
    """A prepared-data folder is missing, incomplete (interrupted prepare) or stale."""


def interrupted(directory: Path) -> bool:
    """Whether a prepare into ``directory`` stopped before it finished (it left its publishing
    marker or its staging folder)."""
    return (Path(directory) / PUBLISHING).exists() or any(Path(directory).glob(_STAGING_PREFIX + "*"))


def begin_prepare(out: Path) -> None:
    """Create ``out`` and clear staging folders left by a killed run."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(_STAGING_PREFIX + "*"):
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A temporary folder inside ``out`` (same file system, so ``publish`` is a rename)."""
    tmp = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=out))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(staged: Path, out: Path, names: list[str]) -> None:
    """Mark ``out`` incomplete, then move the staged files ``names`` into it in order (each move atomic)."""
    (out / PUBLISHING).touch()
    (out / STATS).unlink(missing_ok=True)
    for name in names:
        os.replace(staged / name, out / name)


def finish_prepare(out: Path, stats: dict[str, Any]) -> dict[str, Any]:
    """Write ``stats.json`` — the completion marker — last, with the size and SHA-256 of every
    output file so that a later corruption (truncation, overwrite) is detected before use;
    returns what it wrote."""
    files = {
        p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(out.iterdir())
        if p.is_file() and p.name != STATS and not p.name.startswith(".")
    }
    stats = {**stats, "files": files}
    write_json(out / STATS, stats)
    (out / PUBLISHING).unlink(missing_ok=True)
    return stats


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_files(directory: Path, stats: dict[str, Any], *, checksums: bool = False) -> None:
    """Check the files ``stats.json`` lists (sizes; SHA-256 too with ``checksums``)."""
    for name, expected in stats.get("files", {}).items():
        path = Path(directory) / name
        problem = None
        if not path.is_file():
            problem = "is missing"
        elif path.stat().st_size != expected["bytes"]:
            problem = f"has {path.stat().st_size} bytes, {expected['bytes']} expected"
        elif checksums and _sha256(path) != expected["sha256"]:
            problem = "does not match its recorded SHA-256"
        if problem:
            raise NotPreparedError(f"{path} {problem}: the prepared folder is corrupted; re-run its prepare command")


def read_stats(directory: Path, what: str, command: str) -> dict[str, Any]:
    """``stats.json`` of a prepared folder, or :class:`NotPreparedError` saying how to make it
    (no or an unreadable ``stats.json``, a listed file missing or of another size). A
    ``stats.json`` without ``files`` (written before files were recorded) is not checked further."""
    path = Path(directory) / STATS
    if not path.is_file():
        raise NotPreparedError(
            f"{directory}: not a prepared {what} (no {STATS}; missing, or its prepare was interrupted): "
            f"run `{command}`"
        )
    try:
        stats = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        stats = None
    if not isinstance(stats, dict):  # truncated or overwritten
        raise NotPreparedError(f"{path} is not a JSON object: the prepared folder is corrupted; re-run `{command}`")
    try:
        verify_files(Path(directory), stats)
    except NotPreparedError as e:
        raise NotPreparedError(f"{e} (`{command}`)") from None
    return stats
