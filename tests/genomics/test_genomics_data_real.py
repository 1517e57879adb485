"""Real-data checks (BSD_REAL_DATA): GenomicBenchmarks test splits, interval slicing from real hg38, baselines."""
import csv
import gzip

import numpy as np
import pytest
from tests.support.genomics_helpers import real_data, write_bed  # noqa: F401  (fixture)

from genomics.data.baselines import markov_baselines
from genomics.data.gb import GBTask, prepare_genomic_benchmarks
from genomics.data.hg38 import prepare_hg38
from genomics.tokenizer import DNATokenizer

pytestmark = pytest.mark.real_data
CHR2 = "chr2_1-2333275.fa.gz"
CHR2_LEN, CHR22_OFFSET, CHR22_LEN = 2_333_275, 32_000_000, 300_000


def _prepare_fullseq(real_data, tmp_path, name):
    source = real_data / "genomic_benchmarks" / "fullseq_test" / f"{name}_test.csv.gz"
    return prepare_genomic_benchmarks(dataset=name, source=source, fasta=None, download=False,
                                      holdout_fraction=0.2, seed=0, out=tmp_path / name)


@pytest.mark.parametrize("name, total, per_class", [
    ("human_nontata_promoters", 9034, {"negative": 4119, "positive": 4915}),
    ("human_enhancers_cohn", 6948, {"negative": 3474, "positive": 3474}),
])
def test_fullseq_holdout_counts(real_data, tmp_path, name, total, per_class):
    stats = _prepare_fullseq(real_data, tmp_path, name)
    train, test = stats["splits"]["train"], stats["splits"]["test"]
    assert train["total"] + test["total"] == total
    for cls, n in per_class.items():
        assert train["per_class"][cls] + test["per_class"][cls] == n
        assert abs(test["per_class"][cls] - 0.2 * n) <= 1
    task = GBTask.load(tmp_path / name)
    assert task.split("test")[0].shape == (test["total"], task.max_length)


def _fullseq_labels(real_data, name) -> dict[str, int]:
    path = real_data / "genomic_benchmarks" / "fullseq_test" / f"{name}_test.csv.gz"
    with gzip.open(path, "rt") as fh:
        return {row["seq"]: int(row["label"]) for row in csv.DictReader(fh)}


def _inside(real_data, tmp_path, name, region, lo, hi) -> tuple:
    """An interval folder with the test intervals of ``name`` inside region[lo, hi), shifted by -lo.

    The same intervals form its train and test splits (a prepared task needs both), and a class
    with no interval there gets one ``filler_CLASS`` interval (a task needs two classes).
    """
    out = tmp_path / f"iv_{name}_{region}"
    rows = {}
    for cls in ("negative", "positive"):
        path = real_data / "genomic_benchmarks" / "intervals" / name / "test" / f"{cls}.csv.gz"
        with gzip.open(path, "rt") as fh:
            rows[cls] = [r for r in csv.DictReader(fh) if r["region"] == region and lo <= int(r["start"])
                         and int(r["end"]) <= hi]
        lines = ["id,region,start,end,strand"] + [
            f"{r['id']},{region},{int(r['start']) - lo},{int(r['end']) - lo},{r['strand']}" for r in rows[cls]]
        if not rows[cls]:
            lines.append(f"filler_{cls},{region},0,200,+")
        for split in ("train", "test"):
            (out / split).mkdir(parents=True, exist_ok=True)
            (out / split / f"{cls}.csv.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return out, rows


@pytest.mark.parametrize("name, region, fasta, lo, hi, expected", [
    ("human_nontata_promoters", "chr2", CHR2, 0, CHR2_LEN, {"FP001993": 1, "FP001987": 1}),
    ("human_enhancers_cohn", "chr2", CHR2, 0, CHR2_LEN, {"test_positive_691": 1, "test_positive_1337": 1}),
    ("human_nontata_promoters", "chr22", "hg38_chr22_32000000_32300000.fa.gz", CHR22_OFFSET,
     CHR22_OFFSET + CHR22_LEN, {"FP018764": 1}),
    ("human_enhancers_cohn", "chr22", "hg38_chr22_32000000_32300000.fa.gz", CHR22_OFFSET,
     CHR22_OFFSET + CHR22_LEN, {"test_negative_2323": 0}),
])
def test_slicing_real_hg38_recovers_gb_test_sequences(real_data, tmp_path, name, region, fasta, lo, hi, expected):
    folder, rows = _inside(real_data, tmp_path, name, region, lo, hi)
    prepare_genomic_benchmarks(dataset=name, source=folder, fasta=real_data / "hg38_sample" / fasta,
                               download=False, holdout_fraction=None, seed=0, out=tmp_path / "task")
    labels = _fullseq_labels(real_data, name)
    decode = DNATokenizer().decode
    task = GBTask.load(tmp_path / "task")
    found = {}
    with np.load(tmp_path / "task" / "test.npz") as data:
        for ident, ids, label in zip(data["ids"], data["input_ids"], data["labels"]):
            if str(ident).startswith("filler_"):
                continue
            assert labels[decode(ids)] == label  # every sliced sequence is in the real test set, same label
            found[str(ident)] = int(label)
    assert sum(map(len, rows.values())) == len(found)
    assert {k: found[k] for k in expected} == expected
    assert task.labels == {"negative": 0, "positive": 1}


def test_markov_baselines_real_chr2(real_data, tmp_path):
    cut = int(CHR2_LEN * 0.8)
    bed = write_bed(tmp_path / "c.bed", [("chr2", 0, cut, "train"), ("chr2", cut, CHR2_LEN, "valid")])
    prepare_hg38(fasta=real_data / "hg38_sample" / CHR2, bed=bed, download=False, out=tmp_path / "g")
    result = markov_baselines(tmp_path / "g")
    print(result)
    assert result["baseline_unigram_loss"] == pytest.approx(1.378, rel=1.5e-3, abs=0)
    assert result["baseline_kmer_order"] == 6
    assert result["baseline_kmer_loss"] == pytest.approx(1.327, rel=1.5e-3, abs=0)
