"""The embedded default genomics data: a seeded synthetic genome and a GenomicBenchmarks-style task.

``prepare_synthetic_genomics(out, seed)`` writes ``out/genome`` (the hg38-style layout, through
the same converter and seeded split as ``bsd prepare hg38``) and ``out/gb`` (a task in the layout
of ``bsd prepare genomic-benchmarks``), in seconds, ~0.7 MB on disk.

Genome (two chromosomes, 2 Mb): an order-3 Markov background whose GC content follows 50-kb
isochores (GC 34% or 56%, as human L1 / H3 isochores) and which depletes CpG, with CpG islands;
soft-masked interspersed repeats (four families, copies 10–30% diverged, either strand); micro- and
minisatellites (periods 1–6 and 12–48); segmental duplications (copies of 1–5 kb from up to 60 kb
upstream); N gaps at each chromosome start and one inside. A k-mer model beats the base frequencies
(Markov background), and a model with long context beats the k-mer model (the isochore read from
hundreds of bases, periods > 8, duplications). Measured: unigram 1.378, best k-mer (order 6) 1.347
nats/base; HyenaDNA-tiny with LayerNorm, 300 steps of the CPU config: 1.343. (With isochores of GC
38% / 50% and repeats 2–15% diverged, the k-mer model memorised the repeat families at order 7–8 and
stayed ahead of it.)

Task ``synthetic_promoters`` (negative/positive, 170–200 bp, max_length 200): positives carry a
CCAAT-like box followed 30–50 bp downstream by a TATA-like box, each sampled from a position
weight matrix (90% consensus per base), either strand (the construct reverse-complemented in 30%),
and, as promoters overlap CpG islands, half of them sit on CpG-island background (GC-rich, CpG not
depleted); negatives are isochore background (40%), carry one box only (40%), or both boxes in the
wrong order or spacing (20%); 4% of labels are flipped (ceiling ~96%). Composition alone separates
about three quarters; the rest needs the motifs and their order. Measured (generator version 1):
HyenaDNA d64 from scratch, 4 epochs on 2 CPU cores, seed 1: 72.2% test accuracy with LayerNorm and
with DyT; version 2, ``bsd demo`` (fine-tuning its 300-step checkpoints): 72.5% (LayerNorm), 71.9%
(DyT). (Without the CpG-island positives the task took LayerNorm 8 epochs to reach 60%, too slow
for the demo.)
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from bio_speech_dyt.prepared import preparing, up_to_date
from genomics.data.gb import KIND as GB
from genomics.data.gb import TaskSplit, write_task
from genomics.data.gb_sources import Example
from genomics.data.hg38 import KIND as HG38
from genomics.data.hg38 import prepare_hg38

# recorded in stats.json: a folder made by another version is refused by a re-run (remove it to rebuild)
GENERATOR_VERSION = 2  # 2: isochores GC 34% / 56% (were 38% / 50%), repeat copies 10-30% diverged (2-15%)
CHROMOSOMES = {"chrS1": 1_200_000, "chrS2": 800_000}
TASK = "synthetic_promoters"
TASK_SIZES = {"train": 4000, "test": 1000}
TASK_MAX_LENGTH = 200
_BASES = np.frombuffer(b"ACGT", dtype=np.uint8)
_CCAAT_BOX, _TATA_BOX = "GGCCAATCT", "TATAAAAGG"


def _markov_tables(rng: np.random.Generator) -> np.ndarray:
    """Order-3 transition tables [3 regimes (AT-rich, GC-rich, CpG island), 64 contexts, 4 bases]."""
    tables = []
    for gc, cpg_factor in ((0.34, 0.2), (0.56, 0.25), (0.66, 0.9)):  # GC as human L1 / H3 isochores
        base = np.array([(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2])
        probs = rng.dirichlet(base * 40, size=64)  # context-specific structure for k-mer models to learn
        probs[np.arange(64) % 4 == 1, 2] *= cpg_factor  # context ending in C: suppress G (CpG depletion)
        tables.append(probs / probs.sum(axis=1, keepdims=True))
    return np.stack(tables)


def _sample_markov(tables: np.ndarray, regime: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """``len(regime)`` independent chains of ``length`` bases (0..3), stepped together (vectorised)."""
    n = regime.size
    out = np.empty((n, length), dtype=np.uint8)
    ctx = rng.integers(0, 64, size=n)
    cum = np.cumsum(tables, axis=2)
    u = rng.random((length, n))
    for t in range(length):
        base = (u[t, :, None] > cum[regime, ctx]).sum(axis=1).clip(max=3)
        out[:, t] = base
        ctx = (ctx * 4 + base) % 64
    return out


def _mutate(seq: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    seq = seq.copy()
    hit = rng.random(seq.size) < rate
    seq[hit] = (seq[hit] + rng.integers(1, 4, size=int(hit.sum()))) % 4
    return seq


def _revcomp(seq: np.ndarray) -> np.ndarray:
    return (3 - seq)[::-1]


def _chromosome(length: int, tables: np.ndarray, families: list[np.ndarray], rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray]:
    """(bases 0..3 with 4 = N, soft-mask flags) of one chromosome."""
    seg = 2000
    n_seg = -(-length // seg)
    isochore = np.repeat(rng.integers(0, 2, size=-(-n_seg // 25)), 25)[:n_seg]
    island = rng.random(n_seg) < 0.03
    seq = _sample_markov(tables, np.where(island, 2, isochore), seg, rng).ravel()[:length]
    masked = np.zeros(length, dtype=bool)

    def place(piece: np.ndarray, soft: bool) -> None:
        pos = int(rng.integers(0, length - piece.size))
        seq[pos : pos + piece.size] = piece
        masked[pos : pos + piece.size] |= soft

    for _ in range(length // 3000):  # interspersed repeats, ~15% of the genome
        fam = families[int(rng.integers(len(families)))]
        lo = int(rng.integers(0, fam.size // 2)) if rng.random() < 0.5 else 0  # 5'-truncated copies
        piece = _mutate(fam[lo:], rng.uniform(0.10, 0.30), rng)  # old copies, as most of the human genome's
        place(_revcomp(piece) if rng.random() < 0.5 else piece, soft=True)
    for _ in range(length // 4000):  # microsatellites (period 1-6) and minisatellites (period 12-48)
        period = int(rng.integers(1, 7)) if rng.random() < 0.6 else int(rng.integers(12, 49))
        unit = rng.integers(0, 4, size=period).astype(np.uint8)
        copies = int(rng.integers(max(4, 24 // period), max(8, 300 // period)))
        place(_mutate(np.tile(unit, copies), 0.03, rng), soft=True)
    for _ in range(length // 60_000):  # segmental duplications
        size = int(rng.integers(1000, 5000))
        src = int(rng.integers(0, length - size))
        dst = min(length - size, src + int(rng.integers(size, 60_000)))
        seq[dst : dst + size] = _mutate(seq[src : src + size], 0.02, rng)
    seq[:5000] = 4  # telomere gap
    gap = int(rng.integers(length // 3, 2 * length // 3))
    seq[gap : gap + 30_000] = 4
    return seq, masked


def write_genome_fasta(path: Path, seed: int = 0) -> None:
    """The synthetic genome as a gzip FASTA (soft-masked repeats, N gaps)."""
    rng = np.random.default_rng(seed)
    tables = _markov_tables(rng)
    families = [_sample_markov(tables, np.array([1]), n, rng)[0] for n in (300, 600, 1000, 2000)]
    letters = np.frombuffer(b"ACGTN", dtype=np.uint8)
    with gzip.open(path, "wb", compresslevel=1) as fh:
        for name, length in CHROMOSOMES.items():
            seq, masked = _chromosome(length, tables, families, rng)
            text = letters[seq] + np.where(masked & (seq < 4), 32, 0).astype(np.uint8)  # +32: lower case
            fh.write(f">{name}\n".encode())
            for i in range(0, length, 60):
                fh.write(text[i : i + 60].tobytes() + b"\n")


def _motif(consensus: str, rng: np.random.Generator) -> np.ndarray:
    """One instance of a PWM whose consensus base has probability 0.85 at each position."""
    cons = np.searchsorted(_BASES, np.frombuffer(consensus.encode(), dtype=np.uint8)).astype(np.uint8)
    return _mutate(cons, 0.10, rng)


def _task_example(label: int, background: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    seq = background.copy()
    size = seq.size
    kind = "both" if label else str(rng.choice(["none", "one", "wrong"], p=[0.4, 0.4, 0.2]))
    first = int(rng.integers(40, 80))
    if kind == "both":
        boxes = [(first, _CCAAT_BOX), (first + int(rng.integers(30, 51)), _TATA_BOX)]
    elif kind == "one":
        boxes = [(first, _CCAAT_BOX)] if rng.random() < 0.5 else [(first + 40, _TATA_BOX)]
    elif kind == "wrong":
        if rng.random() < 0.5:  # wrong order
            boxes = [(first, _TATA_BOX), (first + int(rng.integers(30, 51)), _CCAAT_BOX)]
        else:  # wrong spacing
            boxes = [(first - 30, _CCAAT_BOX), (first - 30 + int(rng.integers(80, 111)), _TATA_BOX)]
    else:
        boxes = []
    for pos, consensus in boxes:
        pos = min(max(pos, 0), size - len(consensus))
        seq[pos : pos + len(consensus)] = _motif(consensus, rng)
    return _revcomp(seq) if rng.random() < 0.3 else seq


def make_task(seed: int = 0) -> tuple[dict[str, TaskSplit], list[str]]:
    """The ``synthetic_promoters`` splits (sequences as strings) and class names."""
    rng = np.random.default_rng([seed, 1])
    tables = _markov_tables(np.random.default_rng(seed))  # the genome's background model
    splits = {}
    for split, n in TASK_SIZES.items():
        true = np.arange(n) % 2
        # promoters overlap CpG islands: half the positives are drawn from the island regime
        regime = np.where((true == 1) & (rng.random(n) < 0.5), 2, rng.integers(0, 2, size=n))
        backgrounds = _sample_markov(tables, regime, TASK_MAX_LENGTH, rng)
        labels = np.where(rng.random(n) < 0.04, 1 - true, true)
        examples = []
        for i in range(n):
            length = int(rng.integers(170, TASK_MAX_LENGTH + 1))
            seq = _task_example(int(true[i]), backgrounds[i, :length], rng)
            examples.append(Example(f"{split}_{i}", _BASES[seq].tobytes().decode(), "", f"synthetic {split} #{i}"))
        splits[split] = TaskSplit(examples, labels.astype(np.int64))
    return splits, ["negative", "positive"]


def prepare_synthetic_genomics(out: Path, seed: int = 0) -> None:
    """Write ``out/genome`` (hg38-style) and ``out/gb`` (GenomicBenchmarks-style) from ``seed``; each
    under its folder's prepare lock (the genome's source FASTA is written inside it, as a dotfile).
    A part already made by this generator version with this seed is kept; one made by another is
    refused (OccupiedError naming what differs)."""
    out = Path(out)
    generator = {"generator": "synthetic genome", "seed": seed, "version": GENERATOR_VERSION}
    task_generator = {**generator, "generator": "synthetic promoters"}
    if up_to_date(out / "genome", HG38, generator) and up_to_date(out / "gb", GB, task_generator):
        print(f"{out}: synthetic genome and task up to date (generator version {GENERATOR_VERSION}, seed {seed}), kept")
        return
    with preparing(out / "genome", HG38, generator):
        source = out / "genome" / ".synthetic-genome.fa.gz"
        try:
            write_genome_fasta(source, seed)
            prepare_hg38(fasta=source, bed=None, download=False, out=out / "genome", seed=seed)
        finally:
            source.unlink(missing_ok=True)
    with preparing(out / "gb", GB, task_generator):
        splits, classes = make_task(seed)
        write_task(out / "gb", TASK, splits, classes, max_length=TASK_MAX_LENGTH,
                   extra_stats={"source": f"synthetic (seed {seed})", "source_kind": "synthetic", "seed": seed})
