"""FASTA conversion (plain / gzip / bgzip → canonical bgzip + .fai/.gzi) and indexed genome access.

The converted genome is upper case ``ACGTN`` only (soft-masking and IUPAC codes are counted, not
kept), in 80-column lines, BGZF-compressed with Biopython and indexed by pyfaidx. Conversion
streams: memory stays flat however long a chromosome is.
"""
from __future__ import annotations

import gzip
import os
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
import pyfaidx
from Bio import bgzf
from tqdm import tqdm

from bio_speech_dyt.prepared import DataError, NotPreparedError
from bio_speech_dyt.textfile import BOM, compression, decode_line
from genomics.tokenizer import bytes_to_ids, normalise_bytes

GENOME_FASTA = "genome.fa.gz"
LINE_WIDTH = 80
N_BIN = 1024  # bases per bin of the per-contig N-count track used to skip assembly gaps
_FLUSH_BYTES = 1 << 20


@dataclass
class Contig:
    """What conversion learned about one FASTA record."""

    name: str
    length: int = 0
    iupac: int = 0
    softmasked: int = 0
    n_bins: list[np.ndarray] = field(default_factory=list, repr=False)

    def n_per_bin(self) -> np.ndarray:
        """Number of N per :data:`N_BIN`-base bin (last bin may be partial)."""
        return np.concatenate(self.n_bins) if self.n_bins else np.zeros(0, dtype=np.int64)


class _RecordWriter:
    """Normalises one record's sequence in chunks and writes it as fixed-width lines."""

    def __init__(self, out: BinaryIO, contig: Contig, source: str):
        self.out, self.contig, self.source = out, contig, source
        self.raw = bytearray()
        self.pending = np.zeros(0, dtype=np.uint8)
        self.n_carry = np.zeros(0, dtype=np.uint8)  # canonical bases of the unfinished N bin

    def add(self, line: bytes) -> None:
        self.raw += line
        if len(self.raw) >= _FLUSH_BYTES:
            self._flush_raw()

    def _flush_raw(self) -> None:
        c = self.contig
        canon, iupac, lower = normalise_bytes(bytes(self.raw), source=self.source, record=c.name, offset=c.length)
        self.raw.clear()
        c.length += canon.size
        c.iupac += iupac
        c.softmasked += lower
        self._track_n(canon)
        self.pending = np.concatenate([self.pending, canon])
        full = self.pending.size // LINE_WIDTH * LINE_WIDTH
        self._write_lines(self.pending[:full])
        self.pending = self.pending[full:]

    def _track_n(self, canon: np.ndarray) -> None:
        seq = np.concatenate([self.n_carry, canon])
        full = seq.size // N_BIN * N_BIN
        if full:
            self.contig.n_bins.append((seq[:full] == ord("N")).reshape(-1, N_BIN).sum(axis=1))
        self.n_carry = seq[full:]

    def _write_lines(self, canon: np.ndarray) -> None:
        if canon.size:
            rows = canon.reshape(-1, min(LINE_WIDTH, canon.size))
            newline = np.full((rows.shape[0], 1), ord("\n"), dtype=np.uint8)
            self.out.write(np.hstack([rows, newline]).tobytes())

    def close(self, line_no: int) -> None:
        self._flush_raw()
        self._write_lines(self.pending)
        if self.n_carry.size:
            self.contig.n_bins.append(np.array([np.count_nonzero(self.n_carry == ord("N"))]))
        if self.contig.length == 0:
            raise DataError(f"{self.source}: record {self.contig.name!r} (ending at line {line_no}) has no sequence")


def _lines(path: Path, bar: tqdm) -> Iterator[bytes]:
    """Lines of a plain or gzip/bgzip file, advancing ``bar`` by compressed bytes read (other
    compressions are refused by :func:`~bio_speech_dyt.textfile.compression`)."""
    gz = compression(path) == "gzip"
    with open(path, "rb") as raw:
        stream: BinaryIO = gzip.GzipFile(fileobj=raw) if gz else raw
        last = 0
        for i, line in enumerate(stream):
            if i % 65536 == 0:
                pos = raw.tell()
                bar.update(pos - last)
                last = pos
            yield line
        bar.update(raw.tell() - last)


def _record_name(src: Path, line_no: int, header: bytes) -> str:
    """The name of a ``>`` header line (first word), which must be ASCII (it goes into .fai and bed files)."""
    fields = header[1:].split(maxsplit=1)
    if not fields:
        return ""
    name = decode_line(f"{src}: line {line_no}", fields[0])
    if not name.isascii():
        bad = next(ch for ch in name if not ch.isascii())
        raise DataError(f"{src}: line {line_no}: record name {name!r} holds the non-ASCII character {bad!r}: "
                        "rename the record (names go into the .fai index and bed files)")
    return name


def convert_fasta(src: Path, dst: Path) -> list[Contig]:
    """Stream FASTA ``src`` (plain, gzip or bgzip) into canonical bgzip ``dst``; return its contigs.

    Raises :class:`DataError` (naming ``src`` and the record/line) for an empty FASTA, sequence
    before the first header, an empty or duplicate record, invalid characters (via
    :class:`~genomics.tokenizer.SequenceError`, also a ``ValueError``) and truncated/corrupt gzip.
    """
    # Hand-written line loop rather than Bio.SeqIO: SeqIO materialises whole records (248 Mb for chr1).
    contigs: list[Contig] = []
    seen: set[str] = set()
    writer: _RecordWriter | None = None
    line_no = 0
    with bgzf.BgzfWriter(str(dst), "wb") as out, tqdm(
        total=src.stat().st_size, unit="B", unit_scale=True, desc=f"convert {src.name}", leave=False
    ) as bar:
        try:
            for line_no, line in enumerate(_lines(src, bar), start=1):
                line = line.rstrip(b"\r\n")
                if line_no == 1:
                    line = line.removeprefix(BOM)  # a byte-order mark some editors write before '>'
                if line.startswith(b">"):
                    if writer is not None:
                        writer.close(line_no - 1)
                    name = _record_name(src, line_no, line)
                    if not name:
                        raise DataError(f"{src}: line {line_no}: FASTA header without a name")
                    if name in seen:
                        raise DataError(f"{src}: line {line_no}: duplicate record name {name!r}")
                    seen.add(name)
                    contigs.append(Contig(name))
                    out.write(b">" + name.encode("ascii") + b"\n")
                    writer = _RecordWriter(out, contigs[-1], str(src))
                elif line.strip():
                    if writer is None:
                        raise DataError(f"{src}: line {line_no}: sequence before the first '>' header")
                    writer.add(line.strip())
            if writer is None:
                raise DataError(f"{src}: empty FASTA (no '>' records)")
            writer.close(line_no)
        except (EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise DataError(f"{src}: truncated or corrupt gzip after line {line_no:,} ({e})") from None
    return contigs


def index_fasta(path: Path) -> None:
    """Build ``path.fai`` and ``path.gzi`` beside a bgzip FASTA we wrote (pyfaidx builds both)."""
    pyfaidx.Faidx(str(path)).close()


def read_fai(path: Path) -> dict[str, int]:
    """Contig lengths from a .fai index (name → length), in file order."""
    lengths = {}
    for line in Path(path).read_text().splitlines():
        name, length, *_ = line.split("\t")
        lengths[name] = int(length)
    return lengths


class Genome:
    """Indexed, read-only access to a canonical bgzip FASTA (``genome.fa.gz`` + .fai + .gzi).

    The pyfaidx handle opens lazily and is reopened in each process (DataLoader workers never
    share one and it is never pickled). ``fetch_ids`` reads only the requested bases.
    """

    def __init__(self, fasta: Path, expected_lengths: dict[str, int] | None = None, expected_bytes: int | None = None):
        self.fasta = Path(fasta)
        for suffix in (".fai", ".gzi"):
            index = Path(str(self.fasta) + suffix)
            if not index.is_file():
                raise NotPreparedError(f"{index}: index missing; re-run the prepare command for {self.fasta.parent}")
        if not self.fasta.is_file():
            raise NotPreparedError(f"{self.fasta}: genome FASTA missing")
        self.lengths = read_fai(Path(str(self.fasta) + ".fai"))
        stale = (expected_lengths is not None and self.lengths != expected_lengths) or (
            expected_bytes is not None and self.fasta.stat().st_size != expected_bytes
        )
        if stale:
            raise NotPreparedError(
                f"{self.fasta}.fai: stale index (does not match {self.fasta.name} as recorded in stats.json); "
                f"re-run the prepare command for {self.fasta.parent}"
            )
        self._faidx: pyfaidx.Faidx | None = None
        self._pid = -1

    def _handle(self) -> pyfaidx.Faidx:
        if self._faidx is None or self._pid != os.getpid():
            with warnings.catch_warnings():  # staleness is checked above, against stats.json, not mtimes
                warnings.simplefilter("ignore", RuntimeWarning)
                self._faidx = pyfaidx.Faidx(str(self.fasta), build_index=False, rebuild=False)
            self._pid = os.getpid()
        return self._faidx

    def fetch_ids(self, chrom: str, start: int, end: int) -> np.ndarray:
        """Token ids (uint8) of ``chrom[start:end]`` (0-based, half-open, inside the contig)."""
        if end <= start:
            return np.zeros(0, dtype=np.uint8)
        seq = self._handle().fetch(chrom, start + 1, end).seq
        return bytes_to_ids(np.frombuffer(seq.encode("ascii"), dtype=np.uint8))

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_faidx"], state["_pid"] = None, -1
        return state
