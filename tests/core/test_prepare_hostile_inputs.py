"""Issue #12, input side: LibriSpeech trees that are off (own output under the root, root one level
off, upper-case extensions, stray files, bad transcripts), GB sources with one class, leaking bed
splits, and text files that are not what their name says (bzip2/xz/zstd named .gz, BOMs, non-UTF-8,
non-ASCII names and letters)."""
import bz2
import lzma

import numpy as np
import pytest
from tests.support.genomics_helpers import random_dna, write_bed, write_csv, write_fasta
from tests.support.speech_helpers import librispeech_tree, write_flac

from bio_speech_dyt.prepared import DataError, NotPreparedError
from genomics.data.gb import GBTask, prepare_genomic_benchmarks
from genomics.data.hg38 import open_genome, prepare_hg38
from genomics.tokenizer import SequenceError
from speech.data.manifest import read_manifest
from speech.data.prepare import prepare_librispeech, read_prepared

RNG = np.random.default_rng(18)
SPEAKERS = {"train-clean-100": ["11", "12", "13"], "dev-clean": ["21"]}


def _entries(out):
    return [e.path for split in ("train", "valid") for e in read_manifest(out / f"{split}.tsv").entries]


# --- item 4: the prepare's own output under --root -------------------------------------------------


def test_out_under_root_is_never_read_as_input(tmp_path, capsys):
    root = librispeech_tree(tmp_path, SPEAKERS, utts=2, seconds=0.5)
    write_flac(root / "dev-clean" / "21" / "1021" / "21-1021-0005.flac", 0.5, rate=22050)  # → OUT/audio
    out = root / "prepared"
    first = prepare_librispeech(root=root, resample=True, valid_fraction=0.25, out=out)
    entries = _entries(out)
    second = prepare_librispeech(root=root, resample=True, valid_fraction=0.25, out=out)
    assert f"not reading {out}: a folder written by `bsd prepare`" in capsys.readouterr().out
    assert _entries(out) == entries and len(entries) == 9 and not any(e.startswith("prepared/") for e in entries)
    assert first["splits"] == second["splits"]
    other = root / "dev-clean" / "old-run"  # an earlier prepare's folder deeper in the tree is skipped too
    prepare_librispeech(root=root, resample=True, valid_fraction=0.25, out=tmp_path / "elsewhere")
    (tmp_path / "elsewhere").rename(other)
    assert _entries(out) == entries and prepare_librispeech(root=root, resample=True, valid_fraction=0.25,
                                                            out=out)["splits"] == first["splits"]


# --- item 8: --root one level off, names that disagree with folders, empty valid split ------------


def test_root_one_level_off_names_the_right_root(tmp_path):
    ls = librispeech_tree(tmp_path / "in", SPEAKERS, utts=1, seconds=0.5)
    layout = "ROOT/SUBSET/SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac"
    for root, depth, right in ((tmp_path / "in", 5, ls), (ls / "train-clean-100", 3, ls),
                               (ls / "train-clean-100" / "11", 2, ls)):
        with pytest.raises(DataError, match=rf"{root}: found audio at depth {depth} .*sit at {layout}: "
                                            rf"--root should be {right}, the folder holding the subset folders"):
            prepare_librispeech(root=root, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    moved = ls / "train-clean-100" / "12" / "1012" / "11-1011-0000.flac"
    (ls / "train-clean-100" / "11" / "1011" / "11-1011-0000.flac").rename(moved)
    with pytest.raises(DataError, match=rf"{moved}: the file name gives speaker 11, chapter 1011, but it lies in "
                                        r"12/1012: move or rename it"):
        prepare_librispeech(root=ls, out=tmp_path / "out")
    moved.rename(ls / "train-clean-100" / "12" / "1012" / "recording.flac")
    with pytest.raises(DataError, match=r"recording\.flac: not a LibriSpeech file name"):
        prepare_librispeech(root=ls, out=tmp_path / "out")


def test_empty_valid_split_is_refused(tmp_path):
    ls = librispeech_tree(tmp_path / "in", {"train-clean-100": ["11"]}, utts=3, seconds=0.5)
    with pytest.raises(DataError, match=r"the valid split would be empty: --valid-fraction 0\.1 holds out whole "
                                        r"speakers and the usable utterances come from 1 speaker\(s\)"):
        prepare_librispeech(root=ls, out=tmp_path / "out")
    assert prepare_librispeech(root=ls, valid_fraction=0.0, out=tmp_path / "out")["splits"]["valid"]["utterances"] == 0
    (ls / "dev-clean" / "21" / "1021").mkdir(parents=True)
    (ls / "dev-clean" / "21" / "1021" / "21-1021-0000.flac").write_bytes(b"")  # the only valid file: skipped
    with pytest.raises(DataError, match=r"valid subset\(s\) dev-clean hold no usable utterance \(1 file\(s\) "
                                        r"skipped: \{'empty': 1\}\)"):
        prepare_librispeech(root=ls, train_subsets=["train-clean-100"], valid_subsets=["dev-clean"],
                            out=tmp_path / "out2")


# --- item 10 (+18): every file under a subset is taken, a transcript, or listed --------------------


def test_upper_case_flac_taken_other_files_listed(tmp_path):
    ls = librispeech_tree(tmp_path / "in", SPEAKERS, utts=2, seconds=0.5)
    chapter = ls / "train-clean-100" / "11" / "1011"
    (chapter / "11-1011-0001.flac").rename(chapter / "11-1011-0001.FLAC")
    write_flac(chapter / "11-1011-0002.wav", 0.5)
    (chapter / "notes.txt").write_text("recorded on a Tuesday\n")
    stats = prepare_librispeech(root=ls, valid_fraction=0.25, out=tmp_path / "out")
    assert "train-clean-100/11/1011/11-1011-0001.FLAC" in _entries(tmp_path / "out")
    assert stats["splits"]["train"]["utterances"] + stats["splits"]["valid"]["utterances"] == 8
    skipped = (tmp_path / "out" / "skipped.tsv").read_text().splitlines()
    assert skipped == ["train-clean-100/11/1011/11-1011-0002.wav\tnot-flac",
                       "train-clean-100/11/1011/notes.txt\tnot-flac"]
    assert stats["skipped"] == {"total": 2, "by_reason": {"not-flac": 2}}
    files = [p for p in (ls / "train-clean-100").rglob("*") if p.is_file()] + list((ls / "dev-clean").rglob("*.*"))
    transcripts = [p for p in files if p.name.endswith(".trans.txt")]
    assert len(files) == 8 + len(skipped) + len(transcripts)  # nothing dropped without a word
    assert (tmp_path / "out" / "train.wrd").is_file()  # the .FLAC file's transcript was found


def test_non_utf8_transcript_names_file_and_line(tmp_path):
    ls = librispeech_tree(tmp_path / "in", SPEAKERS, utts=2, seconds=0.5)
    trans = ls / "train-clean-100" / "12" / "1012" / "12-1012.trans.txt"
    trans.write_bytes(b"12-1012-0000 HELLO\n12-1012-0001 CAF\xc9 AU LAIT\n")  # Latin-1, not UTF-8
    with pytest.raises(DataError, match=rf"{trans}: line 2: byte 0xc9 at column 17 is not UTF-8 text"):
        prepare_librispeech(root=ls, valid_fraction=0.25, out=tmp_path / "out")
    trans.write_bytes(b"\xef\xbb\xbf12-1012-0000 HELLO\n12-1012-0001 CAF\xc3\x89\n")  # UTF-8 with a BOM: fine
    prepare_librispeech(root=ls, valid_fraction=0.25, out=tmp_path / "out")


def test_missing_manifest_is_named(tmp_path):
    ls = librispeech_tree(tmp_path / "in", SPEAKERS, utts=1, seconds=0.5)
    out = tmp_path / "out"
    prepare_librispeech(root=ls, valid_fraction=0.25, out=out)
    with pytest.raises(NotPreparedError, match=rf"{out / 'dev.tsv'}: manifest not found; {out} holds train\.tsv, "
                                               r"valid\.tsv"):
        read_prepared(out, manifests=("dev.tsv",))
    with pytest.raises(NotPreparedError, match=rf"{tmp_path / 'nowhere' / 'valid.tsv'}: manifest not found "
                                               rf"\(no folder {tmp_path / 'nowhere'}\)"):
        read_prepared(tmp_path / "nowhere", manifests=("valid.tsv",))


# --- item 9: a GB source with one class -----------------------------------------------------------


def test_gb_source_with_one_class_is_refused(tmp_path):
    src = write_csv(tmp_path / "one.csv", "seq,label", [f"{random_dna(RNG, 30)},1" for _ in range(20)])
    with pytest.raises(DataError, match=r"one\.csv: the train split holds only class '1' \(15 examples\): a "
                                        r"classification task needs at least 2 classes in train and in test"):
        prepare_genomic_benchmarks(dataset="toy", source=src, fasta=None, download=False, holdout_fraction=0.25,
                                   seed=0, out=tmp_path / "o")
    for split, classes in (("train", ("negative", "positive")), ("test", ("positive",))):
        for cls in classes:
            (tmp_path / "pkg" / split / cls).mkdir(parents=True)
            (tmp_path / "pkg" / split / cls / "a.txt").write_text(random_dna(RNG, 251))
    with pytest.raises(DataError, match=r"pkg: the test split holds only class 'positive'"):
        prepare_genomic_benchmarks(dataset="human_nontata_promoters", source=tmp_path / "pkg", fasta=None,
                                   download=False, holdout_fraction=None, seed=0, out=tmp_path / "o")
    assert not (tmp_path / "o").exists()


# --- item 12: bed splits that leak ----------------------------------------------------------------


def test_bed_overlap_across_splits_is_refused_within_split_counted(tmp_path, capsys):
    fasta = write_fasta(tmp_path / "g.fa", {"chr1": random_dna(RNG, 20_000), "chr2": random_dna(RNG, 5000)})
    bed = write_bed(tmp_path / "leak.bed", [("chr2", 0, 5000, "test"), ("chr1", 0, 10_000, "train"),
                                            ("chr1", 12_000, 13_000, "valid"), ("chr1", 9000, 11_000, "valid")])
    with pytest.raises(DataError, match=r"leak\.bed: line 2 \(chr1:0-10000, train\) overlaps line 4 "
                                        r"\(chr1:9000-11000, valid\): a base in two splits leaks between them"):
        prepare_hg38(fasta=fasta, bed=bed, download=False, out=tmp_path / "o")
    write_bed(bed, [("chr1", 0, 10_000, "train"), ("chr1", 5000, 12_000, "train"), ("chr1", 12_000, 13_000, "valid"),
                    ("chr2", 0, 5000, "test")])  # touching (end == start) is not overlapping
    stats = prepare_hg38(fasta=fasta, bed=bed, download=False, out=tmp_path / "o")
    assert stats["bed_overlaps_within_split"] == 1
    assert "1 intervals overlap another of their split (kept" in capsys.readouterr().out
    assert len(open_genome(tmp_path / "o").intervals) == 4
    bed.write_bytes(b"chr1\t0\t100\ttrain\n# r\xe9gion\nchr\xe9\t0\t100\tvalid\n")
    with pytest.raises(DataError, match=r"leak\.bed: line 3: byte 0xe9 at column 4 is not UTF-8 text"):
        prepare_hg38(fasta=fasta, bed=bed, download=False, out=tmp_path / "o")


# --- item 18: files that are not what their name says ---------------------------------------------


def test_fasta_in_another_compression_bom_and_non_ascii(tmp_path):
    text = b">chr1\n" + random_dna(RNG, 3000).encode() + b"\n"
    out = tmp_path / "o"
    for kind, data in (("bzip2", bz2.compress(text)), ("xz", lzma.compress(text)),
                       ("zstd", b"\x28\xb5\x2f\xfd" + bytes(64)), ("zip", b"PK\x03\x04" + bytes(64))):
        fasta = tmp_path / f"{kind}.fa.gz"
        fasta.write_bytes(data)
        with pytest.raises(DataError, match=rf"{fasta} is {kind}-compressed, not gzip: decompress it or recompress "
                                            r"it with bgzip"):
            prepare_hg38(fasta=fasta, bed=None, download=False, out=out)
    (tmp_path / "bom.fa").write_bytes(b"\xef\xbb\xbf" + text)
    assert prepare_hg38(fasta=tmp_path / "bom.fa", bed=None, download=False, out=out)["contigs"] == {"chr1": 3000}
    (tmp_path / "name.fa").write_bytes(">chré\n".encode() + text[6:])
    with pytest.raises(DataError, match=r"name\.fa: line 1: record name 'chré' holds the non-ASCII character 'é'"):
        prepare_hg38(fasta=tmp_path / "name.fa", bed=None, download=False, out=tmp_path / "o2")
    (tmp_path / "latin1.fa").write_bytes(b">chr\xe9\n" + text[6:])
    with pytest.raises(DataError, match=r"latin1\.fa: line 1: byte 0xe9 at column 4 is not UTF-8 text"):
        prepare_hg38(fasta=tmp_path / "latin1.fa", bed=None, download=False, out=tmp_path / "o2")
    (tmp_path / "letter.fa").write_bytes(">chr1\nACGTACGT\nACéGT\n".encode())
    with pytest.raises(SequenceError, match=r"letter\.fa: record chr1: invalid character 'é' at position 11"):
        prepare_hg38(fasta=tmp_path / "letter.fa", bed=None, download=False, out=tmp_path / "o2")


def test_gb_csv_with_bom_non_ascii_letter_and_other_compression(tmp_path):
    rows = "".join(f"{random_dna(RNG, 30)},{i % 2}\n" for i in range(20))
    src = tmp_path / "bom.csv"
    src.write_bytes(b"\xef\xbb\xbfseq,label\n" + rows.encode())

    def prepare(source, out="o"):
        return prepare_genomic_benchmarks(dataset="toy", source=source, fasta=None, download=False,
                                          holdout_fraction=0.25, seed=0, out=tmp_path / out)

    assert prepare(src)["splits"]["train"]["total"] == 16
    src.write_text("seq,label\nACGT,0\nACΔT,1\n")
    with pytest.raises(SequenceError, match=r"bom\.csv: line 3: record .*invalid character 'Δ' at position 3"):
        prepare(src, "o2")
    src.write_bytes(b"seq,label\nACGT,0\nACGT,caf\xe9\n")
    with pytest.raises(DataError, match=r"bom\.csv: line 3: byte 0xe9 at column 4 is not UTF-8 text"):
        prepare(src, "o2")
    gz = tmp_path / "x.csv.gz"
    gz.write_bytes(bz2.compress(b"seq,label\n" + rows.encode()))
    with pytest.raises(DataError, match=r"x\.csv\.gz is bzip2-compressed, not gzip"):
        prepare(gz, "o2")
    assert GBTask.load(tmp_path / "o").num_classes == 2
