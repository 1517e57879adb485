"""Prepared-data folders (every ``bsd prepare``: hg38, GenomicBenchmarks, LibriSpeech): the lock,
ownership, staging, completion marker, and the checks loaders run.

A prepare runs inside :func:`preparing`, which

* holds ``OUT/.bsd.lock`` (``fcntl.flock``) for the whole prepare: a second prepare into the same
  folder fails at once (:class:`bio_speech_dyt.locks.LockedError`) and never touches the first one's files;
* refuses an input that lies where an output goes (inputs are never written), a folder holding
  another kind's prepared data or files of someone else's that it would replace, and a complete
  folder of its own kind made with other arguments (a re-run with the same arguments rebuilds it
  atomically, byte for byte the same);
* names ``OUT`` in an ``OSError`` that names no file (a full disk), and leaves no staging folder
  nor lock behind.

The files are written into a staging folder inside ``OUT`` (validating as they go), with
``stats.json`` — the completion marker, with ``kind``, ``arguments`` and the size and SHA-256 of
every file — written there too. :func:`publish` then drops a ``.publishing`` marker, removes the
old ``stats.json`` and stale outputs, moves the files into ``OUT`` with ``os.replace`` and
``stats.json`` last, and removes ``.publishing``. A prepare
killed while publishing leaves a folder that loaders refuse (``NotPreparedError``) until a re-run
completes it; one that fails before (bad input, full disk) leaves the previous complete output
untouched. The lock (present while a prepare runs), the owner marker ``.bsd-prepared`` (the
kind, written when a prepare claims the folder, so that a folder whose ``stats.json`` is gone or
corrupted is still known as ours) and ``.publishing`` are dotfiles: prepared folders compare
file for file on their outputs, and ``stats.json`` lists only those.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from bio_speech_dyt.io import file_digest, write_json, write_text
from bio_speech_dyt.locks import LOCK_NAME as LOCK  # flock'ed by the prepare running in the folder
from bio_speech_dyt.locks import exclusive_lock

STATS = "stats.json"
PUBLISHING = ".publishing"  # present from the first move until stats.json is written
OWNER = ".bsd-prepared"  # the kind of prepare that owns the folder: written when it claims the folder, kept
_STAGING_PREFIX = ".staging-"


@dataclass(frozen=True)
class Kind:
    """One kind of prepared folder: what it is called, the command that makes it, what it writes."""

    name: str
    what: str
    command: str
    outputs: tuple[str, ...]  # files (and folders) a prepare of this kind writes into OUT
    keys: tuple[str, ...]  # stats.json keys that identify a folder written before ``kind`` was recorded


KINDS = {k.name: k for k in (
    Kind("hg38", "genome", "bsd prepare hg38 (--fasta PATH [--bed PATH] | --download) --out DIR",
         ("genome.fa.gz", "genome.fa.gz.fai", "genome.fa.gz.gzi", "sequences.bed"), ("contigs",)),
    Kind("genomic-benchmarks", "GenomicBenchmarks task",
         "bsd prepare genomic-benchmarks --dataset NAME (--source PATH | --download) --out DIR",
         ("labels.json", "train.npz", "test.npz"), ("dataset", "max_length")),
    Kind("librispeech", "speech corpus (LibriSpeech-style manifests)",
         "bsd prepare librispeech --root PATH/LibriSpeech --out DIR",
         ("train.tsv", "valid.tsv", "train.wrd", "train.ltr", "valid.wrd", "valid.ltr", "skipped.tsv", "audio"),
         ("manifest_root",)),
)}


class DataError(ValueError):
    """Bad input data; the message names the file and, where it applies, the record or line."""


class NotPreparedError(FileNotFoundError):
    """A prepared-data folder is missing, incomplete (interrupted prepare), stale or of another kind."""


class OccupiedError(FileExistsError):
    """``--out`` holds something a prepare must not replace (another kind's data, foreign files,
    a complete folder made with other arguments, or one of the prepare's own inputs)."""


# --- the lock ------------------------------------------------------------------------------------


@dataclass
class _Claim:
    kind: str | None
    arguments: dict[str, Any] | None


_HELD: dict[str, _Claim] = {}  # resolved folder -> this process's lock on it


@contextlib.contextmanager
def locked(out: Path, kind: str | None = None, arguments: dict[str, Any] | None = None) -> Iterator[bool]:
    """Hold ``out``'s lock (re-entrant within a process); yields whether this call took it."""
    key = str(out.resolve())
    if key in _HELD:
        yield False
        return
    with exclusive_lock(out, f"{out} is being prepared by another process (pid {{pid}}); "
                             "wait for it or use another --out"):
        _HELD[key] = _Claim(kind, arguments)
        try:
            yield True
        finally:
            _HELD.pop(key)


# --- claiming a folder ---------------------------------------------------------------------------


def _make_folder(out: Path) -> bool:
    """Create ``out`` (and its parents); whether it was created. Errors name the folder."""
    for ancestor in (out, *out.parents):
        if ancestor.exists() or ancestor.is_symlink():
            if not ancestor.is_dir():
                where = "is a file" if ancestor == out else f"lies under {ancestor}, which is a file"
                raise NotADirectoryError(errno.ENOTDIR, f"--out {out} {where}, not a folder; choose another --out")
            break
    if out.is_dir():
        return False
    try:
        out.mkdir(parents=True)
    except FileExistsError:  # made by a concurrent prepare in the meantime
        return False
    except OSError as e:
        raise type(e)(e.errno, f"cannot create --out folder {out}: {e.strerror}") from None
    return True


def resolved(path: Path | str | None) -> str | None:
    """An input path as a prepare records it in ``arguments`` (absolute, links resolved)."""
    return str(Path(path).resolve()) if path is not None else None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_inputs(out: Path, kind: str, inputs: Iterable[Path | None]) -> None:
    """Refuse an input that is, or lies inside, an output of a ``kind`` prepare into ``out``
    (same resolved path or same inode: links count)."""
    targets = [out / name for name in (*KINDS[kind].outputs, STATS)]
    for given in inputs:
        if given is None:
            continue
        path = Path(given)
        for target in targets:
            if _same_file(path, target) or target.resolve() in path.resolve().parents:
                raise OccupiedError(
                    f"{path} is an input of this prepare and {target} is where it writes an output: inputs are "
                    f"never overwritten; choose another --out than {out}")


def _recorded_kind(out: Path) -> tuple[str | None, dict | None, bool]:
    """(kind, stats, ours) of what ``out`` holds: from stats.json (its ``kind``, or inferred for a
    folder written before kinds were recorded), else from the owner marker, else (a folder an older
    version was interrupted in, or its stats.json corrupted) from its files."""
    stats = load_stats(out / STATS)
    if stats is not None:
        held = infer_kind(out, stats)
        return held, stats, held is not None  # a stats.json of no known kind is someone else's
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return (out / OWNER).read_text().strip() or None, None, True
    if (out / PUBLISHING).exists() or (out / STATS).exists():  # interrupted or corrupted, by an older version
        return infer_kind(out, {}), None, True
    return None, None, False


def _check_owner(out: Path, kind: str, arguments: dict[str, Any]) -> None:
    """Refuse to replace another kind's folder, foreign files, or a complete folder made with other
    arguments; a re-run with the same arguments (or into an interrupted prepare of this kind) rebuilds."""
    held, stats, ours = _recorded_kind(out)
    if held is not None and held != kind:
        other = KINDS.get(held)
        raise OccupiedError(f"{out} holds a prepared {other.what if other else held} (written by `bsd prepare {held}`); "
                            f"a `bsd prepare {kind}` there would replace its files: remove it or choose another --out")
    if not ours:
        foreign = sorted(n for n in (*KINDS[kind].outputs, STATS) if (out / n).exists() or (out / n).is_symlink())
        if foreign:
            raise OccupiedError(f"{out} holds {', '.join(foreign)}, which no record of a `bsd prepare {kind}` there "
                                "vouches for: this prepare would replace them; move them away or choose another --out")
        return
    if stats is None:
        print(f"note: {out}: rebuilding the incomplete prepared {KINDS[kind].what} there")
        return
    before, now = stats.get("arguments"), plain(arguments)
    if before is None:
        print(f"note: {out}: replacing a prepared {KINDS[kind].what} written by an older version "
              "(arguments not recorded)")
    elif before != now:
        changed = {k: (before.get(k), now.get(k)) for k in sorted({*before, *now}) if before.get(k) != now.get(k)}
        diff = "; ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in changed.items())
        raise OccupiedError(f"{out} already holds a prepared {KINDS[kind].what} made with other arguments ({diff}); "
                            "remove it or choose another --out (a re-run with the same arguments rebuilds it)")
    else:
        print(f"note: {out} already holds this prepare's output; rebuilding it")


def _named(e: OSError, out: Path) -> OSError:
    """``e`` with ``out`` in its message when it names no file (a full disk: ENOSPC has no path)."""
    if e.errno is None or e.filename is not None or str(out) in str(e):
        return e
    try:
        return type(e)(e.errno, f"{e.strerror} while preparing into {out} (its previous complete output, if any, "
                                "is kept)")
    except TypeError:
        return OSError(e.errno, f"{e.strerror} while preparing into {out}")


@contextlib.contextmanager
def preparing(out: Path, kind: str, arguments: dict[str, Any], inputs: Iterable[Path | None] = ()) -> Iterator[Path]:
    """Claim ``out`` for a ``kind`` prepare made with ``arguments`` (recorded in ``stats.json``;
    compared on a re-run) reading ``inputs``: see the module doc. Nested claims of the same folder
    within a process (a generator wrapping a prepare) share the outer one's lock and arguments."""
    out = Path(out)
    check_inputs(out, kind, inputs)
    created, claimed = _make_folder(out), False
    try:
        with locked(out, kind, arguments) as outermost:
            try:
                if outermost:
                    _check_owner(out, kind, arguments)
                    for old in out.glob(_STAGING_PREFIX + "*"):  # left by a killed run (we hold the lock)
                        shutil.rmtree(old, ignore_errors=True)
                    claimed = not (out / OWNER).exists()
                    write_text(out / OWNER, kind + "\n")  # (re)written every time: each run does the same moves
                elif _HELD[str(out.resolve())].kind != kind:
                    raise RuntimeError(f"{out}: nested prepare of another kind")
                yield out
            except OSError as e:
                raise _named(e, out) from e
            finally:
                if claimed and {p.name for p in out.iterdir()} <= {OWNER, LOCK}:
                    (out / OWNER).unlink(missing_ok=True)  # nothing of ours came of it: the folder is as it was
    finally:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only when empty: a failed first prepare leaves no folder behind


@contextlib.contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A temporary folder inside ``out`` (same file system, so ``publish`` is a rename)."""
    tmp = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=out))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(staged: Path, out: Path, stats: dict[str, Any]) -> dict[str, Any]:
    """Complete a prepare: write ``stats.json`` (``kind``, ``arguments``, ``stats`` and the size and
    SHA-256 of every staged file, so that a later truncation or overwrite is detected before use)
    into ``staged``, then move everything into ``out``, ``stats.json`` last. Returns what it wrote.
    Must run inside :func:`preparing` for ``out``."""
    claim = _HELD.get(str(out.resolve()))
    if claim is None or claim.kind is None:
        raise RuntimeError(f"publish({out}) outside preparing()")
    names = sorted(p.name for p in staged.iterdir() if not p.name.startswith("."))
    files = {n: {"bytes": (staged / n).stat().st_size, "sha256": file_digest(staged / n)} for n in names}
    stats = plain({**stats, "kind": claim.kind, "arguments": claim.arguments, "files": files})
    write_json(staged / STATS, stats)
    (out / PUBLISHING).touch()
    (out / STATS).unlink(missing_ok=True)
    for stale in set(KINDS[claim.kind].outputs) - set(names):  # never leave an old output beside the new ones
        if (out / stale).is_file():
            (out / stale).unlink()
    for name in names:
        os.replace(staged / name, out / name)
    os.replace(staged / STATS, out / STATS)
    (out / PUBLISHING).unlink(missing_ok=True)
    return stats


def plain(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (paths as strings, tuples as lists, numpy scalars as numbers)."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


# --- loading -------------------------------------------------------------------------------------


def interrupted(directory: Path) -> bool:
    """Whether a prepare into ``directory`` stopped before it finished (it left its publishing
    marker or its staging folder)."""
    return (Path(directory) / PUBLISHING).exists() or any(Path(directory).glob(_STAGING_PREFIX + "*"))


def load_stats(path: Path) -> dict[str, Any] | None:
    """A ``stats.json`` as a dict; None when it is missing or not a JSON object."""
    try:
        stats = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return stats if isinstance(stats, dict) else None


def infer_kind(directory: Path, stats: dict[str, Any]) -> str | None:
    """The kind a ``stats.json`` records or, for one written before kinds were, the kind whose keys
    it has (else whose output files the folder holds)."""
    if isinstance(stats.get("kind"), str):
        return stats["kind"]
    for kind in KINDS.values():
        if all(k in stats for k in kind.keys):
            return kind.name
    for kind in KINDS.values():
        if (Path(directory) / kind.outputs[0]).is_file():
            return kind.name
    return None


def up_to_date(directory: Path, kind: str, arguments: dict[str, Any]) -> bool:
    """Whether ``directory`` holds a finished ``kind`` prepare made with ``arguments`` whose files
    have their recorded sizes (what a generator of default data may reuse instead of rebuilding)."""
    stats = load_stats(Path(directory) / STATS)
    if stats is None or interrupted(directory) or infer_kind(directory, stats) != kind \
            or stats.get("arguments") != plain(arguments):
        return False
    try:
        verify_files(directory, stats)
    except NotPreparedError:
        return False
    return True


def verify_files(directory: Path, stats: dict[str, Any], *, checksums: bool = False) -> None:
    """Check the files ``stats.json`` lists (sizes; SHA-256 too with ``checksums``)."""
    for name, expected in stats.get("files", {}).items():
        path = Path(directory) / name
        problem = None
        if not path.is_file():
            problem = "is missing"
        elif path.stat().st_size != expected["bytes"]:
            problem = f"has {path.stat().st_size} bytes, {expected['bytes']} expected"
        elif checksums and file_digest(path) != expected["sha256"]:
            problem = "does not match its recorded SHA-256"
        if problem:
            raise NotPreparedError(f"{path} {problem}: the prepared folder is corrupted; re-run its prepare command")


def _hint_subfolders(directory: Path, kind: Kind) -> str:
    """``; its subfolder X is one`` when a folder without stats.json holds prepared folders of ``kind``."""
    with contextlib.suppress(OSError):
        found = [p for p in sorted(Path(directory).iterdir())
                 if p.is_dir() and (s := load_stats(p / STATS)) is not None and infer_kind(p, s) == kind.name]
        if found:
            return f"; {', '.join(str(p) for p in found)} {'is one' if len(found) == 1 else 'are'}"
    return ""


def read_stats(directory: Path, kind: str) -> dict[str, Any]:
    """``stats.json`` of a prepared ``kind`` folder, or :class:`NotPreparedError` saying what to
    pass instead: no or an unreadable ``stats.json``, a folder of another kind, a listed file
    missing or of another size. A ``stats.json`` without ``kind`` (written before kinds were
    recorded) is accepted when its keys or files are those of ``kind``; one without ``files`` is
    not checked further."""
    expected = KINDS[kind]
    command = expected.command
    directory = Path(directory)
    path = directory / STATS
    if not path.is_file():
        raise NotPreparedError(
            f"{directory}: not a prepared {expected.what} (no {STATS}; missing, or its prepare was interrupted): "
            f"run `{command}`{_hint_subfolders(directory, expected)}"
        )
    stats = load_stats(path)
    if stats is None:  # truncated or overwritten
        raise NotPreparedError(f"{path} is not a JSON object: the prepared folder is corrupted; re-run `{command}`")
    held = infer_kind(directory, stats)
    if held != kind:
        other = KINDS.get(held) if held else None
        holds = f"holds a prepared {other.what} (`bsd prepare {held}`)" if other else "holds a stats.json of no known prepare"
        raise NotPreparedError(f"{directory} {holds}, not a {expected.what}; pass the folder written by `{command}`")
    try:
        verify_files(directory, stats)
    except NotPreparedError as e:
        raise NotPreparedError(f"{e} (`{command}`)") from None
    return stats
