"""``bsd prepare hg38``: a reference genome + interval split, in the hg38-style prepared layout.

Writes into ``out``: ``genome.fa.gz`` (canonical bgzip) with ``.fai``/``.gzi``, ``sequences.bed``
(chr, start, end, split) and ``stats.json``::

    {"splits": {"train": {"intervals": N, "bases": N}, "valid": {...}, "test": {...}},
     "contigs": {name: length}, "fasta_bytes": N, "bases": N, "n_bases": N, "iupac_to_n": N,
     "softmasked": N, "split_source": PATH | "seeded", "gap_blocks_dropped": N,
     "bed_overlaps_within_split": N, "seed": S, "source": PATH,
     "kind": "hg38", "arguments": {...}, "files": {name: {"bytes", "sha256"}}}

The prepare runs under :func:`bio_speech_dyt.prepared.preparing` (lock, ownership and input checks:
``--fasta OUT/genome.fa.gz --out OUT`` is refused, the input is never written).

Without ``--bed`` the split is seeded blocks per chromosome (see :func:`genomics.data.bed.seeded_split`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bio_speech_dyt.prepared import preparing, publish, read_stats, resolved, staging
from genomics.data.bed import Intervals, read_bed, seeded_split, within_split_overlaps, write_bed
from bio_speech_dyt.download import RemoteFile, download
from genomics.data.fasta import GENOME_FASTA, N_BIN, Genome, convert_fasta, index_fasta

BED = "sequences.bed"
HG38_BASE_URL = "https://storage.googleapis.com/basenji_barnyard2"
HG38_FILES = ("hg38.ml.fa.gz", "sequences_human.bed")
KIND = "hg38"


def download_hg38(dest: Path) -> tuple[Path, Path]:
    """Fetch HyenaDNA's ``hg38.ml.fa.gz`` and ``sequences_human.bed`` (resumable, MD5-checked)."""
    fasta, bed = (download(RemoteFile(f"{HG38_BASE_URL}/{name}", name), dest) for name in HG38_FILES)
    return fasta, bed


def prepare_hg38(*, fasta: Path | None, bed: Path | None, download: bool, out: Path, seed: int = 0) -> dict:
    """Convert ``fasta`` (or the downloaded hg38) into ``out`` with its split; return stats."""
    out = Path(out)
    if fasta is None and not download:
        raise ValueError("prepare hg38: give --fasta PATH or --download")
    for path in (fasta, bed):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"prepare hg38: {path} not found")
    arguments = {"fasta": resolved(fasta), "bed": resolved(bed), "download": download, "seed": seed}
    with preparing(out, KIND, arguments, inputs=(fasta, bed)):
        if download:
            fasta, bed = download_hg38(out / "downloads")
        return _prepare(Path(fasta), bed, out, seed)


def _prepare(fasta: Path, bed: Path | None, out: Path, seed: int) -> dict:
    with staging(out) as tmp:
        contigs = convert_fasta(fasta, tmp / GENOME_FASTA)
        index_fasta(tmp / GENOME_FASTA)
        lengths = {c.name: c.length for c in contigs}
        if bed is not None:
            intervals, dropped = read_bed(Path(bed), lengths), 0
        else:
            intervals, dropped = seeded_split(lengths, {c.name: c.n_per_bin() for c in contigs}, N_BIN, seed)
        write_bed(tmp / BED, intervals)
        stats = {
            "splits": intervals.counts(),
            "contigs": lengths,
            "fasta_bytes": (tmp / GENOME_FASTA).stat().st_size,
            "bases": sum(lengths.values()),
            "n_bases": int(sum(c.n_per_bin().sum() for c in contigs)),
            "iupac_to_n": sum(c.iupac for c in contigs),
            "softmasked": sum(c.softmasked for c in contigs),
            "split_source": str(bed) if bed is not None else "seeded",
            "gap_blocks_dropped": dropped,
            "bed_overlaps_within_split": within_split_overlaps(intervals),
            "seed": seed,
            "source": str(fasta),
        }
        _print_summary(out, stats)
        return publish(tmp, out, stats)


def _print_summary(out: Path, stats: dict) -> None:
    print(f"{out}: {len(stats['contigs'])} contigs, {stats['bases']:,} bases "
          f"({stats['n_bases']:,} N, {stats['iupac_to_n']:,} IUPAC codes → N, {stats['softmasked']:,} soft-masked)")
    for split, c in stats["splits"].items():
        print(f"  {split:5s}: {c['intervals']:>8,} intervals {c['bases']:>15,} bases")
    if stats["gap_blocks_dropped"]:
        print(f"  skipped {stats['gap_blocks_dropped']} blocks that are mostly N (assembly gaps)")
    if stats["bed_overlaps_within_split"]:
        print(f"  note: {stats['bed_overlaps_within_split']:,} intervals overlap another of their split "
              "(kept; those bases are seen twice per epoch)")


@dataclass
class PreparedGenome:
    """A prepared genome folder: indexed FASTA + validated intervals."""

    directory: Path
    genome: Genome
    intervals: Intervals
    stats: dict


def open_genome(directory: Path) -> PreparedGenome:
    """Open a prepared genome folder, checking completeness and index freshness."""
    directory = Path(directory)
    stats = read_stats(directory, KIND)
    genome = Genome(directory / GENOME_FASTA, expected_lengths=stats["contigs"], expected_bytes=stats["fasta_bytes"])
    intervals = read_bed(directory / BED, genome.lengths)
    return PreparedGenome(directory, genome, intervals, stats)
