"""GenomicBenchmarks prepare (every source kind), bad input, the loader and the evaluation splits."""
import json
import os
import sys
import types

import numpy as np
import pytest
import torch
from tests.support.genomics_helpers import random_dna, write_csv, write_fasta

from bio_speech_dyt.cli import main as bsd
from bio_speech_dyt.prepared import DataError, NotPreparedError
from genomics.data.gb import GBDataset, GBTask, gb_train_val_split, prepare_genomic_benchmarks
from genomics.data.hg38 import prepare_hg38
from genomics.tokenizer import PAD_ID, DNATokenizer, SequenceError, reverse_complement, reverse_complement_ids

RNG = np.random.default_rng(1)
tok = DNATokenizer()


def prepare(source, out, dataset="human_nontata_promoters", **kw):
    args = dict(dataset=dataset, source=source, fasta=None, download=False, holdout_fraction=None, seed=0, out=out)
    return prepare_genomic_benchmarks(**{**args, **kw})


def package_layout(root, n=(6, 4), length=251):
    for split, count in zip(("train", "test"), n):
        for cls in ("negative", "positive"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(count):
                (d / f"{cls}_{i}.txt").write_text(random_dna(RNG, length))
    return root


def test_package_layout_end_to_end_cli(tmp_path):
    src = package_layout(tmp_path / "src")
    out = tmp_path / "task"
    assert bsd(["prepare", "genomic-benchmarks", "--dataset", "human_nontata_promoters", "--source", str(src),
                "--out", str(out)]) == 0
    task = GBTask.load(out)
    assert task.name == "human_nontata_promoters" and task.labels == {"negative": 0, "positive": 1}
    assert task.num_classes == 2 and task.max_length == 251
    x, y = task.split("train")
    assert x.dtype == torch.long and x.shape == (12, 251) and y.tolist() == [0] * 6 + [1] * 6
    assert tok.decode(x[0]) == (src / "train/negative/negative_0.txt").read_text()
    stats = json.loads((out / "stats.json").read_text())
    assert stats["splits"]["test"] == {"total": 8, "per_class": {"negative": 4, "positive": 4},
                                       "length": {"min": 251, "max": 251, "mean": 251.0}, "cropped": 0, "padded": 0}
    assert stats["published"] == {"train": 27_097, "test": 9_034}


def test_csv_pair_int_and_name_labels_crop_and_pad(tmp_path):
    long_seq, short_seq = random_dna(RNG, 260), random_dna(RNG, 10)
    (tmp_path / "src").mkdir()
    write_csv(tmp_path / "src" / "data_train.csv", "sequence,target", [f"{long_seq},1", f"{short_seq.lower()},negative"])
    write_csv(tmp_path / "src" / "data_test.tsv.gz", "seq\tlabel", [f"{short_seq}\tpositive", f"{long_seq}\t0"])
    prepare(tmp_path / "src", tmp_path / "o")
    task = GBTask.load(tmp_path / "o")
    x, y = task.split("train")
    assert y.tolist() == [1, 0]
    assert tok.decode(x[0]) == long_seq[4:255]  # centre crop of 260 to 251
    assert (x[1, :241] == PAD_ID).all() and tok.decode(x[1]) == short_seq  # left padding
    stats = task.stats["splits"]["train"]
    assert stats["cropped"] == 1 and stats["padded"] == 1 and task.stats["padding"] == "left"


def test_single_csv_holdout_is_stratified_and_seeded(tmp_path):
    rows = [f"{random_dna(RNG, 20)},{int(i < 70)}" for i in range(100)]
    src = write_csv(tmp_path / "x_test.csv.gz", "seq,label", rows)
    a = prepare(src, tmp_path / "a", dataset="my_task", holdout_fraction=0.2, seed=3)
    prepare(src, tmp_path / "b", dataset="my_task", holdout_fraction=0.2, seed=3)
    prepare(src, tmp_path / "c", dataset="my_task", holdout_fraction=0.2, seed=4)
    assert a["splits"]["test"]["per_class"] == {"0": 6, "1": 14} and a["splits"]["train"]["total"] == 80
    assert a["max_length"] == 20  # unknown task: the longest sequence
    xa, xb, xc = (GBTask.load(tmp_path / d).split("test")[0] for d in "abc")
    assert torch.equal(xa, xb) and not torch.equal(xa, xc)
    with pytest.raises(DataError, match="has only the split.* give --holdout-fraction"):
        prepare(src, tmp_path / "d", dataset="my_task")


def test_interval_folder_slices_genome(tmp_path):
    chrom = random_dna(RNG, 5000)
    fasta = write_fasta(tmp_path / "g.fa.gz", {"chr1": chrom.lower(), "2": chrom[::-1]}, "gzip")
    for split in ("train", "test"):
        (tmp_path / "iv" / split).mkdir(parents=True)
        write_csv(tmp_path / "iv" / split / "positive.csv.gz", "id,region,start,end,strand",
                  ["p1,chr1,100,351,+", "p2,1,1000,1251,-"])
        write_csv(tmp_path / "iv" / split / "negative.csv.gz", "id,region,start,end,strand", ["n1,chr2,0,251,+"])
    stats = prepare(tmp_path / "iv", tmp_path / "o", fasta=fasta)
    x, y = GBTask.load(tmp_path / "o").split("test")
    assert stats["source_kind"] == "intervals"
    assert [tok.decode(r) for r in x] == [chrom[::-1][:251], chrom[100:351].upper(),
                                         reverse_complement(chrom[1000:1251].upper())]
    assert y.tolist() == [0, 1, 1]
    assert not list(tmp_path.glob("g.fa.gz.*"))  # no index written next to the input
    prepare_hg38(fasta=fasta, bed=None, download=False, out=tmp_path / "genome")
    prepare(tmp_path / "iv", tmp_path / "o3", fasta=tmp_path / "genome")  # a prepared genome is used in place
    assert torch.equal(GBTask.load(tmp_path / "o3").split("test")[0], x)
    with pytest.raises(DataError, match="interval folder needs --fasta"):
        prepare(tmp_path / "iv", tmp_path / "o2")
    write_csv(tmp_path / "iv" / "test" / "negative.csv.gz", "id,region,start,end,strand", ["n1,chr1,4900,5100,+"])
    with pytest.raises(DataError, match=r"negative\.csv\.gz: line 2: chr1:4900-5100 is outside chr1"):
        prepare(tmp_path / "iv", tmp_path / "o", fasta=fasta)
    write_csv(tmp_path / "iv" / "test" / "negative.csv.gz", "id,region,start,end,strand", ["n1,chrQ,0,10,+"])
    with pytest.raises(DataError, match=r"line 2: region 'chrQ' is not in the genome"):
        prepare(tmp_path / "iv", tmp_path / "o", fasta=fasta)


@pytest.mark.parametrize("header, rows, error, message", [
    ("seq,foo", ["ACGT,1"], DataError, r"bad\.csv: missing column label or target"),
    ("seq,label", ["ACGT,maybe"], DataError, r"bad\.csv: line 2: unknown label 'maybe' for human_nontata_promoters"),
    ("seq,label", ["ACGT,0", "ACGT,2"], DataError, r"bad\.csv: line 3: unknown label '2'"),
    ("seq,label", ["ACGT,0", "AC-T,1"], SequenceError, r"bad\.csv: line 3: record .*invalid character '-' at position 3"),
    ("id,seq,label", ["a,ACGT,0", "b,ACGT,1", "a,ACGG,0"], DataError, r"bad\.csv: line 4: duplicate id 'a'"),
])
def test_bad_csv(tmp_path, header, rows, error, message):
    src = write_csv(tmp_path / "bad.csv", header, rows)
    with pytest.raises(error, match=message):
        prepare(src, tmp_path / "o", holdout_fraction=0.5)


def test_empty_sequences_are_counted_skips(tmp_path, capsys):
    src = write_csv(tmp_path / "x.csv", "seq,label", [f"{random_dna(RNG, 30)},{i % 2}" for i in range(10)] + [",1", " ,0"])
    stats = prepare(src, tmp_path / "o", holdout_fraction=0.5)
    assert stats["skipped_empty"] == 2
    assert stats["splits"]["train"]["total"] + stats["splits"]["test"]["total"] == 10
    assert "skipped 2 empty sequences" in capsys.readouterr().out


def test_empty_class_folder_and_truncated_gzip(tmp_path):
    src = package_layout(tmp_path / "src", n=(2, 2))
    for f in (src / "test" / "positive").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=r"test/positive: empty class folder"):
        prepare(src, tmp_path / "o")
    src = write_csv(tmp_path / "x.csv.gz", "seq,label", [f"{random_dna(RNG, 500)},1" for _ in range(200)])
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"x\.csv\.gz: truncated or corrupt gzip"):
        prepare(src, tmp_path / "o", holdout_fraction=0.5)


def test_interrupted_prepare_is_refused(tmp_path, monkeypatch):
    src = package_layout(tmp_path / "src", n=(2, 2))
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        prepare(src, tmp_path / "o")
    monkeypatch.undo()
    with pytest.raises(NotPreparedError, match="interrupted"):
        GBTask.load(tmp_path / "o")
    prepare(src, tmp_path / "o")
    assert GBTask.load(tmp_path / "o").split("train")[0].shape == (4, 251)


def test_download_through_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "genomic_benchmarks", None)
    with pytest.raises(DataError, match="--download needs the genomic-benchmarks package"):
        prepare(None, tmp_path / "o", download=True)
    cache = package_layout(tmp_path / "cache" / "human_nontata_promoters", n=(3, 2))
    calls = []

    def download_dataset(name, version=None, **kwargs):
        calls.append((name, version))
        return cache

    loc2seq = types.SimpleNamespace(download_dataset=download_dataset)
    monkeypatch.setitem(sys.modules, "genomic_benchmarks", types.SimpleNamespace(loc2seq=loc2seq))
    monkeypatch.setitem(sys.modules, "genomic_benchmarks.loc2seq", loc2seq)
    assert bsd(["prepare", "genomic-benchmarks", "--dataset", "human_nontata_promoters", "--download",
                "--out", str(tmp_path / "o")]) == 0
    assert calls == [("human_nontata_promoters", 0)]
    assert GBTask.load(tmp_path / "o").stats["splits"]["train"]["total"] == 6


def test_train_val_split_protocol():
    labels = np.array([0] * 50 + [1] * 30)
    train, val = gb_train_val_split(torch.from_numpy(labels), seed=1)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == 80
    assert np.bincount(labels[val]).tolist() == [5, 3]
    again, _ = gb_train_val_split(labels, seed=1)
    other, _ = gb_train_val_split(labels, seed=2)
    assert np.array_equal(train, again) and not np.array_equal(train, other)
    t, v = gb_train_val_split(100, seed=0)
    assert len(v) == 10 and len(t) == 90


def test_gb_dataset_rc_and_conjoin():
    ids = torch.tensor([[PAD_ID, PAD_ID, 7, 7, 8], [7, 8, 9, 10, 11]])
    labels = torch.tensor([0, 1])
    plain = GBDataset(ids, labels)
    assert torch.equal(plain[0]["input_ids"], ids[0]) and plain[1]["label"] == 1
    rc = GBDataset(ids, labels, rc_prob=1.0)
    assert rc[0]["input_ids"].tolist() == [PAD_ID, PAD_ID, 9, 10, 10]  # padding stays on the left
    conj = GBDataset(ids, labels, conjoin=True)[0]
    assert torch.equal(conj["input_ids_rc"], reverse_complement_ids(ids[0]))
    half = GBDataset(ids.repeat(50, 1), labels.repeat(50), rc_prob=0.5, seed=3)
    flipped = sum(not torch.equal(half[i]["input_ids"], ids[i % 2]) for i in range(100))
    assert 25 < flipped < 75
