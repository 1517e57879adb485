"""The LibriSpeech folder layout: finding every file under ``--root`` and checking where it sits.

``ROOT/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` with
``<speaker>-<chapter>.trans.txt`` beside the audio. :func:`scan_tree` walks each subset folder
and sorts every file into audio (``.flac`` in any case), transcripts, or other files (counted
and listed as skipped ``not-flac``). It never enters a folder written by ``bsd prepare`` (one
holding its owner marker, a ``stats.json`` or a ``.publishing`` marker) nor the ``--out`` folder when that lies under the
root, so a prepare never reads its own output as input. :func:`check_layout` turns audio at the
wrong depth (``--root`` one level too high or too low) into an error that names the right root,
and a file whose name disagrees with its speaker / chapter folders into an error naming it.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from bio_speech_dyt.prepared import OWNER, PUBLISHING, STATS, DataError
from bio_speech_dyt.textfile import decode_line

AUDIO_SUFFIX = ".flac"  # compared case-insensitively
TRANSCRIPT_SUFFIX = ".trans.txt"
LAYOUT = "ROOT/SUBSET/SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac"
_DEPTH = 4  # path parts below the root: subset, speaker, chapter, file


@dataclasses.dataclass
class SubsetFiles:
    audio: list[Path] = dataclasses.field(default_factory=list)
    transcripts: list[Path] = dataclasses.field(default_factory=list)
    other: list[Path] = dataclasses.field(default_factory=list)


def _written_by_us(folder: Path) -> bool:
    return any((folder / name).exists() for name in (OWNER, PUBLISHING, STATS))


def scan_tree(root: Path, out: Path | None = None) -> dict[str, SubsetFiles]:
    """``{subset: files}`` for every folder under ``root`` (see module doc); prints the folders it
    does not enter."""
    excluded = Path(out).resolve() if out is not None else None
    subsets: dict[str, SubsetFiles] = {}

    def skip(folder: Path) -> bool:
        if folder == excluded or _written_by_us(folder):
            print(f"note: not reading {folder}: a folder written by `bsd prepare`")
            return True
        return False

    for top in sorted(p for p in root.iterdir() if p.is_dir()):
        if skip(top.resolve()):
            continue
        files = SubsetFiles()
        for folder, dirs, names in os.walk(top):
            dirs[:] = sorted(d for d in dirs if not skip(Path(folder, d).resolve()))
            for name in names:
                path = Path(folder, name)
                lower = name.lower()
                group = (files.audio if lower.endswith(AUDIO_SUFFIX) else
                         files.transcripts if lower.endswith(TRANSCRIPT_SUFFIX) else files.other)
                group.append(path)
        for group in (files.audio, files.transcripts, files.other):
            group.sort()
        subsets[top.name] = files
    return subsets


def _suggested_root(path: Path) -> Path | None:
    """The root under which audio file ``path`` sits at the LibriSpeech depth, when its name
    confirms the speaker and chapter folders above it; else None."""
    speaker, chapter = _name_ids(path.name)
    if speaker is None or len(path.parents) < 4 or (path.parents[1].name, path.parents[0].name) != (speaker, chapter):
        return None
    return path.parents[3]


def _name_ids(name: str) -> tuple[str | None, str | None]:
    fields = name[: -len(AUDIO_SUFFIX)].split("-")
    return (fields[0], fields[1]) if len(fields) == 3 and all(fields) else (None, None)


def check_layout(root: Path, path: Path) -> str:
    """The speaker of audio file ``path``; :class:`DataError` when it is not at
    ``ROOT/SUBSET/SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac``."""
    parts = path.relative_to(root).parts
    if len(parts) != _DEPTH:
        suggested = _suggested_root(path)
        where = f"{root}: found audio at depth {len(parts)} ({'/'.join(parts)}); LibriSpeech files sit at {LAYOUT}"
        if suggested is None:
            raise DataError(f"{where}: this folder is not in the LibriSpeech layout")
        raise DataError(f"{where}: --root should be {suggested}, the folder holding the subset folders")
    speaker, chapter = _name_ids(parts[-1])
    if speaker is None:
        raise DataError(f"{path}: not a LibriSpeech file name (SPEAKER-CHAPTER-UTT.flac, as in {LAYOUT})")
    if (speaker, chapter) != parts[1:3]:
        raise DataError(f"{path}: the file name gives speaker {speaker}, chapter {chapter}, but it lies in "
                        f"{parts[1]}/{parts[2]}: move or rename it ({LAYOUT}; the speaker decides the split)")
    return speaker


def read_transcripts(files: list[Path]) -> dict[str, str]:
    """``utterance id → words`` from ``*.trans.txt`` files (UTF-8; errors name the file and line)."""
    out: dict[str, str] = {}
    for trans in files:
        for no, raw in enumerate(trans.read_bytes().splitlines(), start=1):
            line = decode_line(f"{trans}: line {no}", raw).strip()
            if not line:
                continue
            utt, _, words = line.partition(" ")
            if not words:
                raise DataError(f"{trans}: line {no}: expected '<utterance-id> WORDS', got {line!r}")
            out[utt] = words
    return out
