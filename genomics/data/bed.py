"""Interval splits in HyenaDNA's ``sequences.bed`` format: ``chr  start  end  split`` (0-based, half-open).

``read_bed`` validates against the genome's contig lengths. An interval on an unknown chromosome or
reaching past the chromosome end is an error naming the file and line: every interval of the real
``sequences_human.bed`` lies inside hg38, so one that does not means a mismatched genome. (Windows
that the *datasets* widen past a chromosome end are shifted back inside; see ``pretrain.py``.)
Intervals of different splits must not share a base (that would leak training data into
validation or test): two that do are an error naming both lines. Overlaps within one split are
allowed, counted in ``stats.json`` (``bed_overlaps_within_split``) and printed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bio_speech_dyt.io import write_text
from bio_speech_dyt.prepared import DataError
from bio_speech_dyt.textfile import check_text, open_text

SPLITS = ("train", "valid", "test")


@dataclass
class Intervals:
    """Parallel arrays of intervals (one row per bed line)."""

    chrom: np.ndarray  # str
    start: np.ndarray  # int64
    end: np.ndarray  # int64
    split: np.ndarray  # str

    def __len__(self) -> int:
        return int(self.start.size)

    def select(self, split: str) -> Intervals:
        keep = self.split == split
        return Intervals(self.chrom[keep], self.start[keep], self.end[keep], self.split[keep])

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {"intervals": n, "bases": n}}`` for the three splits."""
        lengths = self.end - self.start
        return {
            s: {"intervals": int(np.count_nonzero(self.split == s)), "bases": int(lengths[self.split == s].sum())}
            for s in SPLITS
        }

    @classmethod
    def from_rows(cls, rows: list[tuple[str, int, int, str]]) -> Intervals:
        chrom, start, end, split = zip(*rows) if rows else ((), (), (), ())
        return cls(np.array(chrom, dtype=str), np.array(start, dtype=np.int64), np.array(end, dtype=np.int64),
                   np.array(split, dtype=str))


def read_bed(path: Path, lengths: dict[str, int]) -> Intervals:
    """Parse and validate a 4-column split bed (plain or gzip) against contig ``lengths``.

    Blank lines and ``#``/``track``/``browser`` lines are skipped; anything else malformed, and two
    intervals of different splits that share a base (leakage between the splits), raise
    :class:`DataError` naming ``path`` and the line numbers. Overlaps within one split are allowed
    (:func:`within_split_overlaps` counts them).
    """
    rows, line_nos = [], []
    with open_text(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            where = f"{path}: line {line_no}"
            fields = check_text(where, line.rstrip("\r\n")).split("\t")
            if len(fields) != 4:
                raise DataError(f"{where}: expected 4 tab-separated columns (chr, start, end, split), got {len(fields)}")
            chrom, start_s, end_s, split = fields
            try:
                start, end = int(start_s), int(end_s)
            except ValueError:
                raise DataError(f"{where}: start/end must be integers, got {start_s!r}, {end_s!r}") from None
            if split not in SPLITS:
                raise DataError(f"{where}: split must be one of {', '.join(SPLITS)}, got {split!r}")
            if chrom not in lengths:
                raise DataError(f"{where}: chromosome {chrom!r} is not in the genome")
            if not 0 <= start < end:
                raise DataError(f"{where}: need 0 <= start < end, got {start}-{end}")
            if end > lengths[chrom]:
                raise DataError(
                    f"{where}: interval {chrom}:{start}-{end} reaches past the end of {chrom} (length {lengths[chrom]:,})"
                )
            rows.append((chrom, start, end, split))
            line_nos.append(line_no)
    if not rows:
        raise DataError(f"{path}: no intervals")
    intervals = Intervals.from_rows(rows)
    _check_cross_split_overlaps(path, intervals, np.array(line_nos))
    return intervals


def _check_cross_split_overlaps(path: Path, intervals: Intervals, line_nos: np.ndarray) -> None:
    """:class:`DataError` naming the first two intervals of different splits that share a base."""
    def show(k: int) -> str:
        return f"line {line_nos[k]} ({intervals.chrom[k]}:{intervals.start[k]}-{intervals.end[k]}, {intervals.split[k]})"

    last: dict[tuple[str, str], int] = {}  # (chromosome, split) -> row reaching furthest so far
    for j in np.lexsort((intervals.start, intervals.chrom)).tolist():
        chrom, split = str(intervals.chrom[j]), str(intervals.split[j])
        for other in SPLITS:
            i = last.get((chrom, other))
            if other != split and i is not None and intervals.end[i] > intervals.start[j]:
                raise DataError(f"{path}: {show(i)} overlaps {show(j)}: a base in two splits leaks between them; "
                                "make the splits' intervals disjoint")
        if (chrom, split) not in last or intervals.end[j] > intervals.end[last[chrom, split]]:
            last[chrom, split] = j


def within_split_overlaps(intervals: Intervals) -> int:
    """How many intervals overlap one starting before them in the same split (allowed: those bases
    are only weighted twice; HyenaDNA's ``sequences_human.bed`` has none)."""
    count, reach = 0, {}  # (chromosome, split) -> furthest end so far
    for j in np.lexsort((intervals.start, intervals.chrom)).tolist():
        key = (str(intervals.chrom[j]), str(intervals.split[j]))
        count += int(reach.get(key, -1) > intervals.start[j])
        reach[key] = max(reach.get(key, -1), int(intervals.end[j]))
    return count


def write_bed(path: Path, intervals: Intervals) -> None:
    lines = (f"{c}\t{s}\t{e}\t{p}\n" for c, s, e, p in zip(intervals.chrom, intervals.start, intervals.end, intervals.split))
    write_text(path, "".join(lines))


def default_block_size(total_bases: int) -> int:
    """HyenaDNA's interval length (2^17) for a full genome; ~1/100 of a small genome (≥ 4 kb, a multiple of 1 kb)."""
    return int(min(1 << 17, max(4096, total_bases // 100 // 1024 * 1024)))


def seeded_split(
    lengths: dict[str, int],
    n_per_bin: dict[str, np.ndarray],
    n_bin: int,
    seed: int,
    block: int | None = None,
    fractions: tuple[float, float] = (0.1, 0.1),
    max_n_fraction: float = 0.5,
) -> tuple[Intervals, int]:
    """Non-overlapping blocks per chromosome, assigned to valid/test/train by a seeded shuffle.

    Each chromosome is cut into ``block``-base blocks (the last one may be shorter, down to half a
    block); blocks with more than ``max_n_fraction`` N (assembly gaps) are dropped and counted.
    Per chromosome, ``fractions`` (valid, test) of the blocks — at least one each when the
    chromosome has three or more blocks — go to valid and test, the rest to train.
    Returns ``(intervals, dropped_gap_blocks)``.
    """
    block = block or default_block_size(sum(lengths.values()))
    if block % n_bin:
        raise ValueError(f"block ({block}) must be a multiple of the N-track bin ({n_bin})")
    rng = np.random.default_rng(seed)
    rows, dropped = [], 0
    for chrom, length in lengths.items():
        starts = np.arange(0, length, block)
        ends = np.minimum(starts + block, length)
        if starts.size > 1 and ends[-1] - starts[-1] < block // 2:  # merge a short tail into its neighbour
            starts, ends = starts[:-1], np.append(ends[:-2], length)
        n_counts = np.add.reduceat(n_per_bin[chrom], starts // n_bin) if starts.size else starts
        keep = n_counts <= max_n_fraction * (ends - starts)
        dropped += int(np.count_nonzero(~keep))
        starts, ends = starts[keep], ends[keep]
        split = np.full(starts.size, "train", dtype=object)
        if starts.size >= 3:
            order = rng.permutation(starts.size)
            n_valid = max(1, round(fractions[0] * starts.size))
            n_test = max(1, round(fractions[1] * starts.size))
            split[order[:n_valid]] = "valid"
            split[order[n_valid : n_valid + n_test]] = "test"
        rows += [(chrom, int(s), int(e), str(p)) for s, e, p in zip(starts, ends, split)]
    return Intervals.from_rows(rows), dropped
