"""Reading users' text files (FASTA, CSV/TSV, bed, transcripts) so that a wrong file says what it is.

* :func:`compression` reads the magic bytes: gzip (and bgzip) is read; bzip2, xz, zstd and zip
  files, and UTF-16 text, are refused naming the file and what to do, whatever their name says.
* :func:`open_text` decodes UTF-8 with a leading byte-order mark dropped; bytes that are not
  UTF-8 are kept as surrogates (``surrogateescape``) so that :func:`check_text` can name the line
  and column holding them instead of a bare codec error naming no file.
"""
from __future__ import annotations

import contextlib
import gzip
import re
from pathlib import Path
from typing import Iterator, TextIO

from bio_speech_dyt.prepared import DataError

BOM = b"\xef\xbb\xbf"
_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"PK\x03\x04", "zip"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
_ESCAPED = re.compile("[\udc80-\udcff]")


def compression(path: Path) -> str | None:
    """``"gzip"`` for a gzip/bgzip file, None for plain text; :class:`DataError` for a file
    compressed otherwise (or UTF-16 text), naming it and saying what to do."""
    with open(path, "rb") as fh:
        head = fh.read(6)
    kind = next((name for magic, name in _MAGIC if head.startswith(magic)), None)
    if kind == "utf-16":
        raise DataError(f"{path} is UTF-16 text: save it as UTF-8 (or ASCII)")
    if kind not in (None, "gzip"):
        raise DataError(f"{path} is {kind}-compressed, not gzip: decompress it or recompress it with bgzip "
                        f"(or gzip)")
    return kind


@contextlib.contextmanager
def open_text(path: Path, newline: str | None = None) -> Iterator[TextIO]:
    """A plain or gzip text file as UTF-8 (BOM dropped, undecodable bytes escaped; see module doc)."""
    gz = compression(path) == "gzip"
    opener = gzip.open if gz else open
    with opener(path, "rt", encoding="utf-8-sig", errors="surrogateescape", newline=newline) as fh:
        yield fh


def check_text(where: str, text: str) -> str:
    """``text`` if it holds no undecodable byte, else :class:`DataError` naming ``where`` and the column."""
    match = _ESCAPED.search(text)
    if match:
        byte = ord(match.group()) - 0xDC00
        raise DataError(f"{where}: byte 0x{byte:02x} at column {match.start() + 1} is not UTF-8 text: "
                        "save the file as UTF-8")
    return text


def decode_line(where: str, raw: bytes) -> str:
    """One line of bytes as text (a leading BOM dropped), or :class:`DataError` naming ``where``."""
    return check_text(where, raw.removeprefix(BOM).decode("utf-8", "surrogateescape"))
