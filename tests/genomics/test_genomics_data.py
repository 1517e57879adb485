"""hg38-style genome prepare, bed validation, pretraining datasets, baselines and the synthetic default."""
import gzip
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.support.genomics_helpers import random_dna, write_bed, write_fasta

from bio_speech_dyt.cli import main as bsd
from bio_speech_dyt.prepared import DataError, NotPreparedError, OccupiedError
from genomics.data.baselines import markov_baselines
from genomics.data.fasta import GENOME_FASTA
from genomics.data.hg38 import open_genome, prepare_hg38
from genomics.data.pretrain import CaduceusMLMDataset, HyenaPretrainDataset
from genomics.tokenizer import MASK_ID, PAD_ID, DNATokenizer, SequenceError, reverse_complement_ids

RNG = np.random.default_rng(0)
CHR1 = random_dna(RNG, 30_000)
CHR2 = random_dna(RNG, 12_000)
TINY = random_dna(RNG, 300)
RECORDS = {"chr1": CHR1, "chr2": CHR2, "tiny": TINY}
tok = DNATokenizer()


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    """A prepared genome with a hand-written bed exercising every window case."""
    tmp = tmp_path_factory.mktemp("genome")
    fasta = write_fasta(tmp / "in.fa.gz", RECORDS, "bgzip")
    bed = write_bed(tmp / "split.bed", [
        ("chr1", 0, 9_500, "train"),       # long: tiled into 10 windows of 1000 (last shifted back)
        ("chr1", 10_000, 10_500, "train"),  # short: one centred window with flanks
        ("chr1", 29_900, 30_000, "train"),  # short at the chromosome end: shifted inside
        ("tiny", 0, 300, "train"),          # chromosome shorter than a window: right [PAD]
        ("chr2", 0, 6000, "valid"),
        ("chr2", 6000, 12_000, "test"),
    ])
    out = tmp / "prepared"
    prepare_hg38(fasta=fasta, bed=bed, download=False, out=out, seed=0)
    return out


def _seq(ids) -> str:
    return tok.decode(ids)


# --- prepare -------------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [None, "gzip", "bgzip"])
def test_prepare_from_plain_gzip_bgzip_readonly_input(tmp_path, compression, capsys):
    src = tmp_path / "in"
    src.mkdir()
    records = {"chrA": CHR1[:5000].lower() + "RY" + CHR1[5000:8000], "chrB": CHR2[:3000]}
    fasta = write_fasta(src / "genome.fa", records, compression, width=70)
    os.chmod(src, 0o555)
    try:
        assert bsd(["prepare", "hg38", "--fasta", str(fasta), "--out", str(tmp_path / "out"), "--seed", "3"]) == 0
    finally:
        os.chmod(src, 0o755)
    assert sorted(p.name for p in src.iterdir()) == ["genome.fa"]  # nothing written next to the input
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        [GENOME_FASTA, GENOME_FASTA + ".fai", GENOME_FASTA + ".gzi", "sequences.bed", "stats.json"])
    prepared = open_genome(out)
    stats = prepared.stats
    assert stats["contigs"] == {"chrA": 8002, "chrB": 3000}
    assert stats["iupac_to_n"] == 2 and stats["softmasked"] == 5000
    assert _seq(prepared.genome.fetch_ids("chrA", 4998, 5004)) == (CHR1[4998:5000] + "NN" + CHR1[5000:5002]).upper()
    counts = stats["splits"]
    assert sum(c["intervals"] for c in counts.values()) == len(prepared.intervals)
    assert "train:" in capsys.readouterr().out


def test_seeded_split_blocks_are_disjoint_deterministic_and_skip_gaps(tmp_path):
    seq = random_dna(RNG, 200_000)
    seq = seq[:50_000] + "N" * 20_000 + seq[70_000:]
    fasta = write_fasta(tmp_path / "g.fa", {"chrX": seq})
    a = prepare_hg38(fasta=fasta, bed=None, download=False, out=tmp_path / "a", seed=1)
    b = prepare_hg38(fasta=fasta, bed=None, download=False, out=tmp_path / "b", seed=1)
    prepare_hg38(fasta=fasta, bed=None, download=False, out=tmp_path / "c", seed=2)
    bed_a = (tmp_path / "a/sequences.bed").read_text()
    assert bed_a == (tmp_path / "b/sequences.bed").read_text()
    assert bed_a != (tmp_path / "c/sequences.bed").read_text()
    assert a == b and a["gap_blocks_dropped"] >= 1
    iv = open_genome(tmp_path / "a").intervals
    order = np.argsort(iv.start)
    assert np.all(iv.start[order][1:] >= iv.end[order][:-1])  # non-overlapping
    assert all(a["splits"][s]["intervals"] >= 1 for s in ("train", "valid", "test"))
    gap_overlap = np.clip(np.minimum(iv.end, 70_000) - np.maximum(iv.start, 50_000), 0, None)
    assert np.all(gap_overlap <= (iv.end - iv.start) / 2)  # mostly-N blocks dropped


def test_prepare_is_idempotent(tmp_path, genome):
    fasta = write_fasta(tmp_path / "in.fa", RECORDS)
    first = prepare_hg38(fasta=fasta, bed=None, download=False, out=tmp_path / "o", seed=0)
    files = {p.name: p.read_bytes() for p in (tmp_path / "o").iterdir() if p.name != GENOME_FASTA}
    second = prepare_hg38(fasta=fasta, bed=None, download=False, out=tmp_path / "o", seed=0)
    assert first == second
    assert files == {p.name: p.read_bytes() for p in (tmp_path / "o").iterdir() if p.name != GENOME_FASTA}


def test_interrupted_prepare_is_refused_then_rerun_completes(tmp_path, monkeypatch):
    fasta = write_fasta(tmp_path / "in.fa", RECORDS)
    out = tmp_path / "o"
    prepare_hg38(fasta=fasta, bed=None, download=False, out=out, seed=0)
    real_replace, calls = os.replace, []

    def killed(src, dst):  # the process dies after moving the first file into the folder
        if Path(dst).parent == out:
            calls.append(dst)
        if len(calls) > 1:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):  # a re-run (same arguments) killed mid-way
        prepare_hg38(fasta=fasta, bed=None, download=False, out=out, seed=0)
    monkeypatch.undo()
    with pytest.raises(NotPreparedError, match="interrupted"):
        open_genome(out)
    with pytest.raises(NotPreparedError):
        HyenaPretrainDataset(out, "train", 64)
    prepare_hg38(fasta=fasta, bed=None, download=False, out=out, seed=5)  # an incomplete folder takes any arguments
    assert open_genome(out).stats["seed"] == 5
    assert not list(out.glob(".staging-*"))


def test_failed_validation_keeps_previous_output(tmp_path):
    fasta = write_fasta(tmp_path / "in.fa", RECORDS)
    out = tmp_path / "o"
    bed = write_bed(tmp_path / "split.bed", [("chr1", 0, 20_000, "train"), ("chr2", 0, 6000, "valid")])
    prepare_hg38(fasta=fasta, bed=bed, download=False, out=out, seed=0)
    expected = {p.name: p.read_bytes() for p in out.iterdir()}
    write_bed(bed, [("chrZ", 0, 10, "train")])  # the same command, now with a bad bed
    with pytest.raises(DataError):
        prepare_hg38(fasta=fasta, bed=bed, download=False, out=out, seed=0)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == expected
    assert open_genome(out).stats["splits"]["train"]["bases"] == 20_000


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("rows, message", [
    ([("chrZ", 0, 10, "train")], r"bad\.bed: line 1: chromosome 'chrZ' is not in the genome"),
    ([("chr1", 0, 10, "train"), ("chr2", 11_990, 12_010, "valid")],
     r"bad\.bed: line 2: interval chr2:11990-12010 reaches past the end of chr2 \(length 12,000\)"),
    ([("chr1", 0, 10, "training")], r"line 1: split must be one of train, valid, test"),
    ([("chr1", 10, 5, "train")], r"line 1: need 0 <= start < end"),
])
def test_bad_bed(tmp_path, rows, message):
    fasta = write_fasta(tmp_path / "in.fa", RECORDS)
    bed = write_bed(tmp_path / "bad.bed", rows)
    with pytest.raises(DataError, match=message):
        prepare_hg38(fasta=fasta, bed=bed, download=False, out=tmp_path / "o")
    (tmp_path / "cols.bed").write_text("chr1\t0\t10\n")
    with pytest.raises(DataError, match=r"cols\.bed: line 1: expected 4 tab-separated columns"):
        prepare_hg38(fasta=fasta, bed=tmp_path / "cols.bed", download=False, out=tmp_path / "o")


def test_bad_fasta(tmp_path):
    out = tmp_path / "o"
    bad = write_fasta(tmp_path / "bad.fa", {"chr1": "ACGT" * 30, "chr9": "ACGTAC-GT"})
    with pytest.raises(SequenceError, match=r"bad\.fa: record chr9: invalid character '-' at position 7"):
        prepare_hg38(fasta=bad, bed=None, download=False, out=out)
    for name, text, message in [
        ("empty.fa", "", r"empty\.fa: empty FASTA"),
        ("nohead.fa", "ACGT\n>chr1\nACGT\n", r"nohead\.fa: line 1: sequence before the first '>' header"),
        ("dup.fa", ">a\nACGT\n>a\nACGT\n", r"dup\.fa: line 3: duplicate record name 'a'"),
        ("norec.fa", ">a\n>b\nACGT\n", r"norec\.fa: record 'a' .* has no sequence"),
    ]:
        (tmp_path / name).write_text(text)
        with pytest.raises(DataError, match=message):
            prepare_hg38(fasta=tmp_path / name, bed=None, download=False, out=out)
    data = gzip.compress((">a\n" + random_dna(RNG, 50_000) + "\n").encode(), compresslevel=1)
    (tmp_path / "cut.fa.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.fa\.gz: truncated or corrupt gzip"):
        prepare_hg38(fasta=tmp_path / "cut.fa.gz", bed=None, download=False, out=out)
    assert bsd(["prepare", "hg38", "--fasta", str(tmp_path / "empty.fa"), "--out", str(out)]) == 2


def test_missing_or_stale_index(tmp_path, genome):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(genome, copy)
    (copy / (GENOME_FASTA + ".gzi")).unlink()
    with pytest.raises(NotPreparedError, match=r"genome\.fa\.gz\.gzi is missing: the prepared folder is corrupted"):
        open_genome(copy)
    shutil.rmtree(copy)
    shutil.copytree(genome, copy)
    fai = copy / (GENOME_FASTA + ".fai")
    fai.write_text(fai.read_text().replace("\t30000\t", "\t29000\t"))
    with pytest.raises(NotPreparedError, match=r"\.fai: stale index"):
        HyenaPretrainDataset(copy, "train", 100)


# --- datasets ------------------------------------------------------------------------------------


def test_hyena_windows_tiling_flanks_shift_and_pad(genome):
    ds = HyenaPretrainDataset(genome, "train", 1000)
    assert len(ds) == 10 + 1 + 1 + 1
    assert [ds.window(i) for i in (0, 1, 9)] == [("chr1", 0), ("chr1", 1000), ("chr1", 8500)]
    assert ds.window(10) == ("chr1", 10_250 - 500)  # centred on the short interval, flanks from the genome
    assert ds.window(11) == ("chr1", 30_000 - 1001)  # shifted back inside the chromosome
    item = ds[0]
    assert item["input_ids"].shape == item["targets"].shape == (1000,)
    assert item["input_ids"].dtype == torch.long
    assert _seq(item["input_ids"]) == CHR1[:1000]
    assert torch.equal(item["targets"][:-1], item["input_ids"][1:])
    assert _seq(item["targets"]) == CHR1[1:1001]
    tiny = ds[12]
    assert _seq(tiny["input_ids"]) == TINY and (tiny["input_ids"][300:] == PAD_ID).all()
    assert (tiny["targets"][299:] == -100).all() and (tiny["targets"][:299] != -100).all()


def test_hyena_reverse_complement_and_determinism(genome):
    plain = HyenaPretrainDataset(genome, "train", 256)
    rc = HyenaPretrainDataset(genome, "train", 256, rc_prob=1.0)
    window = torch.cat([plain[3]["input_ids"], plain[3]["targets"][-1:]])
    rc_window = torch.cat([rc[3]["input_ids"], rc[3]["targets"][-1:]])
    assert torch.equal(rc_window, reverse_complement_ids(window))
    half = HyenaPretrainDataset(genome, "train", 256, rc_prob=0.5, seed=7)
    again = HyenaPretrainDataset(genome, "train", 256, rc_prob=0.5, seed=7)
    flips = [not torch.equal(half[i]["input_ids"], plain[i]["input_ids"]) for i in range(len(half))]
    assert 0 < sum(flips) < len(flips)
    assert all(torch.equal(half[i]["input_ids"], again[i]["input_ids"]) for i in range(len(half)))
    half.set_epoch(1)
    assert any(not torch.equal(half[i]["input_ids"], again[i]["input_ids"]) for i in range(len(half)))


def test_caduceus_masking(genome):
    ds = CaduceusMLMDataset(genome, "train", 1000, seed=1)
    plain = HyenaPretrainDataset(genome, "train", 1000)
    selected = mask = rand = kept = 0
    for i in range(10):
        item = ds[i]
        original = plain[i]["input_ids"]
        labels, inputs = item["labels"], item["input_ids"]
        sel = labels != -100
        assert torch.equal(labels[sel], original[sel]) and torch.equal(inputs[~sel], original[~sel])
        selected += int(sel.sum())
        mask += int((inputs[sel] == MASK_ID).sum())
        changed = sel & (inputs != MASK_ID) & (inputs != original)
        rand += int(changed.sum())
        kept += int((sel & (inputs == original)).sum())
        assert ((inputs[changed] >= 7) & (inputs[changed] <= 10)).all()
    assert 0.13 < selected / 10_000 < 0.17
    assert 0.76 < mask / selected < 0.84
    assert 0.05 < rand / selected < 0.12  # 10% random, minus draws equal to the original base
    assert 0.08 < kept / selected < 0.16
    tiny = ds[12]
    assert (tiny["labels"][300:] == -100).all() and (tiny["input_ids"][300:] == PAD_ID).all()
    assert torch.equal(ds[5]["input_ids"], CaduceusMLMDataset(genome, "train", 1000, seed=1)[5]["input_ids"])


def test_dataloader_workers_open_their_own_handle(genome):
    ds = HyenaPretrainDataset(genome, "valid", 500)
    ds[0]  # opens the handle in this process
    state = pickle.loads(pickle.dumps(ds))
    assert state.genome._faidx is None
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)
    batches = list(loader)
    assert sum(b["input_ids"].shape[0] for b in batches) == len(ds) == 12
    assert _seq(batches[0]["input_ids"][0]) == CHR2[:500]


def test_markov_baselines_learn_structure(tmp_path):
    unit = "ACGGTCATTG"
    seq = "".join(unit[i % 10] if RNG.random() > 0.05 else "ACGT"[RNG.integers(4)] for i in range(60_000))
    fasta = write_fasta(tmp_path / "p.fa", {"c": seq})
    bed = write_bed(tmp_path / "p.bed", [("c", 0, 48_000, "train"), ("c", 48_000, 60_000, "valid")])
    prepare_hg38(fasta=fasta, bed=bed, download=False, out=tmp_path / "g")
    result = markov_baselines(tmp_path / "g", max_order=4)
    assert result["baseline_unigram_loss"] == pytest.approx(np.log(4), rel=0.04, abs=0)
    assert result["baseline_kmer_loss"] < 0.5 and result["baseline_kmer_order"] >= 2
    assert set(result["baseline_losses"]) == set(range(5))


def test_synthetic_genomics(tmp_path):
    from genomics.data.gb import GBTask
    from genomics.data.synthetic import prepare_synthetic_genomics

    prepare_synthetic_genomics(tmp_path / "a", seed=0)
    size = sum(p.stat().st_size for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert size <= 5e6
    prepared = open_genome(tmp_path / "a" / "genome")
    assert prepared.stats["softmasked"] > 0 and prepared.stats["n_bases"] > 0
    assert len(HyenaPretrainDataset(tmp_path / "a" / "genome", "train", 1024)) > 1000
    task = GBTask.load(tmp_path / "a" / "gb")
    x, y = task.split("train")
    assert x.shape == (4000, 200) and task.num_classes == 2 and 0.45 < y.float().mean() < 0.55
    baselines = markov_baselines(tmp_path / "a" / "genome")
    assert baselines["baseline_kmer_loss"] < baselines["baseline_unigram_loss"] - 0.02
    # the k-mer model's best order stays short: repeat copies too diverged to memorise at order 7-8
    assert 4 <= baselines["baseline_kmer_order"] <= 6
    assert prepared.stats["arguments"]["version"] == 2
    prepare_synthetic_genomics(tmp_path / "b", seed=0)
    for name in ("genome/sequences.bed", "gb/labels.json", "genome/genome.fa.gz.fai"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    stats_a, stats_b = (json.loads((tmp_path / d / "genome/stats.json").read_text()) for d in "ab")
    assert {**stats_a, "source": ""} == {**stats_b, "source": ""}
    assert json.loads((tmp_path / "a/gb/stats.json").read_text())["splits"]["test"]["total"] == 1000
    with np.load(tmp_path / "a/gb/train.npz") as a, np.load(tmp_path / "b/gb/train.npz") as b:
        np.testing.assert_array_equal(a["input_ids"], b["input_ids"])
    fasta = tmp_path / "a/genome/genome.fa.gz"
    before = fasta.stat().st_mtime_ns
    prepare_synthetic_genomics(tmp_path / "a", seed=0)  # made by this version with this seed: kept
    assert fasta.stat().st_mtime_ns == before
    stats_path = tmp_path / "a/genome/stats.json"
    stats = json.loads(stats_path.read_text())
    stats["arguments"]["version"] = 1  # as an older generator recorded it
    stats_path.write_text(json.dumps(stats))
    with pytest.raises(OccupiedError, match=r"other arguments \(version: 1 there, 2 now\); remove it"):
        prepare_synthetic_genomics(tmp_path / "a", seed=0)
    assert fasta.stat().st_mtime_ns == before
