"""``bsd prepare hg38``: a reference genome + interval split, in the hg38-style prepared layout.

Writes into ``out``: ``genome.fa.gz`` (canonical bgzip) with ``.fai``/``.gzi``, ``sequences.bed``
(chr, start, end, split) and ``stats.json``::

    {"splits": {"train": {"intervals": N, "bases": N}, "valid": {...}, "test": {...}},
     "contigs": {name: length}, "fasta_bytes": N, "bases": N, "n_bases": N, "iupac_to_n": N,
     "softmasked": N, "split_source": PATH | "seeded", "seed": S, "source": PATH}

Without ``--bed`` the split is seeded blocks per chromosome (see :func:`genomics.data.bed.seeded_split`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bio_speech_dyt.prepared import begin_prepare, finish_prepare, publish, read_stats, staging
from genomics.data.bed import Intervals, read_bed, seeded_split, write_bed
from genomics.data.download import RemoteFile, download
from genomics.data.fasta import GENOME_FASTA, N_BIN, Genome, convert_fasta, index_fasta

BED = "sequences.bed"
HG38_BASE_URL = "https://storage.googleapis.com/basenji_barnyard2"
HG38_FILES = ("hg38.ml.fa.gz", "sequences_human.bed")
_PREPARE_CMD = "bsd prepare hg38 (--fasta PATH [--bed PATH] | --download) --out DIR"


def download_hg38(dest: Path) -> tuple[Path, Path]:
    """Fetch HyenaDNA's ``hg38.ml.fa.gz`` and ``sequences_human.bed`` (resumable, MD5-checked)."""
    fasta, bed = (download(RemoteFile(f"{HG38_BASE_URL}/{name}", name), dest) for name in HG38_FILES)
    return fasta, bed


def prepare_hg38(*, fasta: Path | None, bed: Path | None, download: bool, out: Path, seed: int = 0) -> dict:
    """Convert ``fasta`` (or the downloaded hg38) into ``out`` with its split; return stats."""
    out = Path(out)
    if download:
        fasta, bed = download_hg38(out / "downloads")
    if fasta is None:
        raise ValueError("prepare hg38: give --fasta PATH or --download")
    for path in (fasta, bed):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"prepare hg38: {path} not found")
    fasta = Path(fasta)
    begin_prepare(out)
    with staging(out) as tmp:
        contigs = convert_fasta(fasta, tmp / GENOME_FASTA)
        index_fasta(tmp / GENOME_FASTA)
        lengths = {c.name: c.length for c in contigs}
        if bed is not None:
            intervals, dropped = read_bed(Path(bed), lengths), 0
        else:
            intervals, dropped = seeded_split(lengths, {c.name: c.n_per_bin() for c in contigs}, N_BIN, seed)
        write_bed(tmp / BED, intervals)
        names = [GENOME_FASTA, GENOME_FASTA + ".fai", GENOME_FASTA + ".gzi", BED]
        publish(tmp, out, names)
    stats = {
        "splits": intervals.counts(),
        "contigs": lengths,
        "fasta_bytes": (out / GENOME_FASTA).stat().st_size,
        "bases": sum(lengths.values()),
        "n_bases": int(sum(c.n_per_bin().sum() for c in contigs)),
        "iupac_to_n": sum(c.iupac for c in contigs),
        "softmasked": sum(c.softmasked for c in contigs),
        "split_source": str(bed) if bed is not None else "seeded",
        "gap_blocks_dropped": dropped,
        "seed": seed,
        "source": str(fasta),
    }
    _print_summary(out, stats)
    finish_prepare(out, stats)
    return stats


def _print_summary(out: Path, stats: dict) -> None:
    print(f"{out}: {len(stats['contigs'])} contigs, {stats['bases']:,} bases "
          f"({stats['n_bases']:,} N, {stats['iupac_to_n']:,} IUPAC codes → N, {stats['softmasked']:,} soft-masked)")
    for split, c in stats["splits"].items():
        print(f"  {split:5s}: {c['intervals']:>8,} intervals {c['bases']:>15,} bases")
    if stats["gap_blocks_dropped"]:
        print(f"  skipped {stats['gap_blocks_dropped']} blocks that are mostly N (assembly gaps)")


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
    stats = read_stats(directory, "genome", _PREPARE_CMD)
    genome = Genome(directory / GENOME_FASTA, expected_lengths=stats["contigs"], expected_bytes=stats["fasta_bytes"])
    intervals = read_bed(directory / BED, genome.lengths)
    return PreparedGenome(directory, genome, intervals, stats)
