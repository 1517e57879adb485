"""Readers for the GenomicBenchmarks source kinds ``bsd prepare genomic-benchmarks`` accepts.

* package layout: ``{train,test}/<class>/*.txt`` (one sequence per file, id = file stem);
* CSV/TSV(.gz): a sequence column (``seq``/``sequence``), a label column (``label``/``target``,
  class names or integer ids) and optionally ``id``; one file, or a folder with a ``train`` and a
  ``test`` file (names containing ``train``/``test``);
* interval folder: ``{train,test}/<class>.csv.gz`` with ``id,region,start,end,strand`` (0-based,
  half-open, ``-`` = reverse complement), sliced from a genome (``--fasta``);
* ``--download``: the genomic-benchmarks package's ``download_dataset`` (package layout).

Each reader returns ``{split: [Example, ...]}``; labels are resolved later (``gb.py``).
Empty sequences are skipped and counted; every other problem raises ``DataError`` naming the file
and line (or file, for the package layout).
"""
from __future__ import annotations

import csv
import gzip
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from bio_speech_dyt.prepared import DataError
from bio_speech_dyt.textfile import BOM, check_text, open_text
from genomics.data.fasta import Genome
from genomics.tokenizer import DNATokenizer, reverse_complement

GB_SPLITS = ("train", "test")
_SPLIT_IN_NAME = re.compile(r"(?:^|[^a-z])(train|test)(?:[^a-z]|$)")


@dataclass
class Example:
    id: str
    seq: str
    label: str  # class name, or an integer id as text (CSV sources)
    where: str  # "FILE: line N" or "FILE", for error messages


@dataclass
class SourceData:
    splits: dict[str, list[Example]]
    kind: str
    skipped_empty: int = 0


def detect_kind(source: Path) -> str:
    """'csv', 'csv-pair', 'package' or 'intervals'."""
    if source.is_file():
        return "csv"
    if not source.is_dir():
        raise FileNotFoundError(f"--source {source} not found")
    split_dirs = [source / s for s in GB_SPLITS if (source / s).is_dir()]
    if split_dirs:
        entries = [p for d in split_dirs for p in d.iterdir()]
        if any(p.is_dir() for p in entries):
            return "package"
        if any(p.name.endswith((".csv", ".csv.gz")) for p in entries):
            return "intervals"
        raise DataError(f"{source}: {split_dirs[0]} holds neither class folders nor <class>.csv.gz interval files")
    return "csv-pair"


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV/TSV(.gz) file with a header line (UTF-8, a BOM dropped)."""
    delimiter = "\t" if ".tsv" in path.name else ","
    try:
        with open_text(path, newline="") as fh:
            reader = csv.DictReader(fh, delimiter=delimiter)
            if reader.fieldnames is None:
                raise DataError(f"{path}: empty file (no header line)")
            check_text(f"{path}: line 1", delimiter.join(reader.fieldnames))
            for row in reader:
                yield reader.line_num, row
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path}: truncated or corrupt gzip ({e})") from None


def _column(path: Path, fieldnames: list[str], options: tuple[str, ...], required: bool = True) -> str | None:
    for name in options:
        if name in fieldnames:
            return name
    if required:
        raise DataError(f"{path}: missing column {' or '.join(options)} (columns: {', '.join(fieldnames)})")
    return None


def read_csv(path: Path) -> tuple[list[Example], int]:
    """Examples of one CSV/TSV(.gz) file and the number of empty sequences skipped."""
    examples, skipped, cols = [], 0, None
    for line, row in _rows(path):
        if cols is None:
            fields = list(row)
            cols = (_column(path, fields, ("seq", "sequence")), _column(path, fields, ("label", "target")),
                    _column(path, fields, ("id", "name"), required=False))
        seq_col, label_col, id_col = cols
        where = f"{path}: line {line}"
        seq, label = (row[seq_col] or "").strip(), check_text(where, (row[label_col] or "").strip())
        if not seq:
            skipped += 1
            continue
        if not label:
            raise DataError(f"{where}: empty label")
        examples.append(Example(check_text(where, row[id_col] or "") if id_col else f"{path.name}:{line}", seq, label,
                                where))
    return examples, skipped


def _split_of(path: Path) -> str | None:
    match = _SPLIT_IN_NAME.search(path.name.lower())
    return match.group(1) if match else None


def read_csv_pair(folder: Path) -> tuple[dict[str, list[Example]], int]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and re.search(r"\.(csv|tsv)(\.gz)?$", p.name))
    by_split: dict[str, Path] = {}
    for path in files:
        split = _split_of(path)
        if split is None:
            continue
        if split in by_split:
            raise DataError(f"{folder}: two {split} files ({by_split[split].name}, {path.name})")
        by_split[split] = path
    if not by_split:
        raise DataError(f"{folder}: no CSV/TSV files named train/test, no {{train,test}}/ folders")
    splits, skipped = {}, 0
    for split, path in by_split.items():
        splits[split], n = read_csv(path)
        skipped += n
    return splits, skipped


def read_package_layout(root: Path) -> tuple[dict[str, list[Example]], int]:
    splits, skipped = {}, 0
    for split in GB_SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            continue
        examples = []
        class_dirs = sorted(p for p in split_dir.iterdir() if p.is_dir())
        for class_dir in class_dirs:
            files = sorted(class_dir.glob("*.txt"))
            if not files:
                raise DataError(f"{class_dir}: empty class folder (no .txt sequence files)")
            for path in files:
                seq = "".join(path.read_bytes().removeprefix(BOM).decode("utf-8", "surrogateescape").split())
                if not seq:
                    skipped += 1
                    continue
                examples.append(Example(path.stem, seq, class_dir.name, str(path)))
        splits[split] = examples
    return splits, skipped


def _resolve_contig(name: str, genome: Genome) -> str | None:
    """Exact name, else with the 'chr' prefix toggled (Ensembl '2' vs UCSC 'chr2')."""
    for candidate in (name, name[3:] if name.startswith("chr") else "chr" + name):
        if candidate in genome.lengths:
            return candidate
    return None


def read_intervals(root: Path, genome: Genome) -> dict[str, list[Example]]:
    """Slice ``{split}/<class>.csv.gz`` intervals from ``genome`` (a canonical, upper-case genome)."""
    decode = DNATokenizer().decode
    splits = {}
    for split in GB_SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            continue
        examples = []
        for path in sorted(split_dir.glob("*.csv*")):
            label = path.name.split(".csv")[0]
            for line, row in _rows(path):
                where = f"{path}: line {line}"
                try:
                    ident, region, strand = (check_text(where, row[k] or "") for k in ("id", "region", "strand"))
                    start, end = int(row["start"]), int(row["end"])
                except KeyError as e:
                    raise DataError(f"{path}: missing column {e} (need id,region,start,end,strand)") from None
                except (TypeError, ValueError):
                    raise DataError(f"{where}: start/end must be integers") from None
                contig = _resolve_contig(region, genome)
                if contig is None:
                    raise DataError(f"{where}: region {region!r} is not in the genome")
                if not 0 <= start < end <= genome.lengths[contig]:
                    raise DataError(f"{where}: {region}:{start}-{end} is outside {contig} (length {genome.lengths[contig]:,})")
                if strand not in ("+", "-"):
                    raise DataError(f"{where}: strand must be '+' or '-', got {strand!r}")
                seq = decode(genome.fetch_ids(contig, start, end))
                examples.append(Example(ident, reverse_complement(seq) if strand == "-" else seq, label, where))
        splits[split] = examples
    return splits


def download_package_layout(dataset: str) -> Path:
    """Fetch ``dataset`` through the genomic-benchmarks package; return its package-layout folder."""
    try:
        from genomic_benchmarks.loc2seq import download_dataset
    except ImportError:
        raise DataError(
            "--download needs the genomic-benchmarks package: pip install 'bio-speech-dyt[genomic-benchmarks]' "
            "(or give --source PATH)"
        ) from None
    return Path(download_dataset(dataset, version=0))


def read_source(source: Path, genome: Genome | None) -> SourceData:
    """Read any source kind (see module doc); ``genome`` is needed for an interval folder."""
    source = Path(source)
    kind = detect_kind(source)
    skipped = 0
    if kind == "csv":
        examples, skipped = read_csv(source)
        splits = {_split_of(source) or "all": examples}
    elif kind == "csv-pair":
        splits, skipped = read_csv_pair(source)
    elif kind == "package":
        splits, skipped = read_package_layout(source)
    else:
        if genome is None:
            raise DataError(f"{source}: an interval folder needs --fasta to slice sequences from")
        splits = read_intervals(source, genome)
    return SourceData(splits, kind, skipped)
