"""fairseq audio manifests: first line the root folder, then ``relative/path<TAB>num_samples``.

Transcripts go beside them line-aligned: ``SPLIT.wrd`` (words) and ``SPLIT.ltr`` (letters,
``|`` between words), as fairseq's ``libri_labels.py`` writes them. A relative root line is
resolved against the manifest's folder (fairseq itself writes absolute roots, as we do).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

from bio_speech_dyt.io import write_text


@dataclasses.dataclass(frozen=True)
class ManifestEntry:
    path: str  # relative to the manifest root
    num_samples: int


@dataclasses.dataclass(frozen=True)
class Manifest:
    root: Path
    entries: tuple[ManifestEntry, ...]

    def __len__(self) -> int:
        return len(self.entries)

    def audio_path(self, i: int) -> Path:
        return self.root / self.entries[i].path

    @property
    def sizes(self) -> list[int]:
        return [e.num_samples for e in self.entries]


def format_manifest(root: Path, entries: Sequence[ManifestEntry]) -> str:
    lines = [str(root)] + [f"{e.path}\t{e.num_samples}" for e in entries]
    return "\n".join(lines) + "\n"


def write_manifest(path: Path, root: Path, entries: Sequence[ManifestEntry]) -> None:
    """Atomic: an interrupted write never leaves a half-written manifest."""
    write_text(path, format_manifest(root, entries))


def read_manifest(path: Path) -> Manifest:
    """Parse a manifest; malformed lines raise ``ValueError`` naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    lines = path.read_text().splitlines()
    if not lines or not lines[0].strip():
        raise ValueError(f"{path}:1: expected the root folder on the first line")
    root = Path(lines[0].strip())
    if not root.is_absolute():
        root = (path.parent / root).resolve()
    entries = []
    for no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[1].strip().isdigit():
            raise ValueError(f"{path}:{no}: expected 'relative/path<TAB>num_samples', got {line!r}")
        entries.append(ManifestEntry(parts[0], int(parts[1])))
    return Manifest(root, tuple(entries))


def letters(words: str) -> str:
    """fairseq's letter targets: ``"HI YOU"`` → ``"H I | Y O U |"``."""
    return " ".join(words.replace(" ", "|")) + " |"


def write_transcripts(out: Path, split: str, transcripts: Sequence[str]) -> None:
    """``SPLIT.wrd`` and ``SPLIT.ltr``, one line per manifest entry."""
    write_text(out / f"{split}.wrd", "".join(t + "\n" for t in transcripts))
    write_text(out / f"{split}.ltr", "".join(letters(t) + "\n" for t in transcripts))
