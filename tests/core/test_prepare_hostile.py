"""Issue #12, prepare side: concurrent prepares, ``--out`` folders that hold something else, inputs
that an output would overwrite, and file-system faults (read-only, not a folder, disk full)."""
import errno
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from tests.support.genomics_helpers import random_dna, write_csv, write_fasta
from tests.support.speech_helpers import librispeech_tree
from tests.core.test_prepare_interrupt import CASES, checksums, prepared_once

import bio_speech_dyt.prepared as prepared
from bio_speech_dyt.cli import main as bsd
from bio_speech_dyt.locks import LockedError as BusyError
from bio_speech_dyt.locks import exclusive_lock
from bio_speech_dyt.prepared import LOCK, NotPreparedError, OccupiedError, preparing
from genomics.data.gb import GBTask, prepare_genomic_benchmarks
from genomics.data.hg38 import open_genome, prepare_hg38
from speech.data.prepare import prepare_librispeech, read_prepared

REPO = Path(__file__).resolve().parents[2]
RNG = np.random.default_rng(12)


def _gb(source, out, seed=0, **kw):
    args = dict(dataset="toy", source=source, fasta=None, download=False, holdout_fraction=0.25, seed=seed, out=out)
    return prepare_genomic_benchmarks(**{**args, **kw})


def _genome(tmp_path, name="in.fa"):
    return write_fasta(tmp_path / name, {"chr1": random_dna(RNG, 20_000), "chr2": random_dna(RNG, 9_000)})


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith((".staging-", LOCK, ".fasta-scratch")))


# --- item 1: concurrent prepares into one folder --------------------------------------------------


_RACER = textwrap.dedent("""
    import functools, sys, time
    from pathlib import Path
    from bio_speech_dyt.cli import main
    import genomics.data.gb  # imports done before the start
    if "synthetic" in sys.argv:  # the synthetic data, made small (the same code, a tenth of the size)
        import genomics.data.synthetic, speech.data.synthetic
        genomics.data.synthetic.CHROMOSOMES = {"chrS1": 160_000, "chrS2": 120_000}
        genomics.data.synthetic.TASK_SIZES = {"train": 400, "test": 100}
        speech.data.synthetic.make_synthetic_speech = functools.partial(
            speech.data.synthetic.make_synthetic_speech, num_speakers=3, utterances_per_speaker=2,
            seconds=(1.0, 1.2), valid_fraction=0.34)
    Path(sys.argv[1] + ".ready").touch()
    while not Path(sys.argv[1]).exists():
        time.sleep(0.002)
    sys.exit(main(sys.argv[2:]))
""")


def _race(tmp_path: Path, *argvs: list[str], timeout: float = 300) -> list[subprocess.CompletedProcess]:
    """Run ``bsd ARGV`` in one real process per argv, released at the same instant."""
    script, go = tmp_path / "racer.py", tmp_path / "go"
    script.write_text(_RACER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), f"{go}{i}", *argv], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i, argv in enumerate(argvs)]
    deadline = time.monotonic() + timeout
    while not all(Path(f"{go}{i}.ready").exists() for i in range(len(procs))):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "racers did not start"
        time.sleep(0.01)
    for i in range(len(procs)):
        Path(f"{go}{i}").touch()
    return [subprocess.CompletedProcess(p.args, p.wait(timeout), *p.communicate()) for p in procs]


def _one_won(results) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    codes = sorted(r.returncode for r in results)
    assert codes == [0, 2], [(r.returncode, r.stderr[-2000:]) for r in results]
    winner, loser = sorted(results, key=lambda r: r.returncode)
    assert ("is being prepared by another process (pid " in loser.stderr
            or "already holds a prepared" in loser.stderr), loser.stderr  # (it started after the winner ended)
    return winner, loser


def test_concurrent_gb_prepares_leave_one_complete_output(tmp_path):
    rows = [f"s{i},{random_dna(RNG, 200)},{i % 2}" for i in range(2000)]
    src = write_csv(tmp_path / "task.csv", "id,seq,label", rows)
    for seed in (0, 1):  # what each run alone writes
        _gb(src, tmp_path / f"alone{seed}", seed=seed, dataset="human_nontata_promoters")
    out = tmp_path / "out"
    argv = ["prepare", "genomic-benchmarks", "--dataset", "human_nontata_promoters", "--source", str(src),
            "--holdout-fraction", "0.25", "--out", str(out)]
    winner, loser = _one_won(_race(tmp_path, [*argv, "--seed", "0"], [*argv, "--seed", "1"]))
    task = GBTask.load(out)
    seed = task.stats["seed"]
    assert winner.args[-1] == str(seed)  # stats.json names the seed of the run that wrote the splits
    alone = tmp_path / f"alone{seed}"
    assert {k: v for k, v in checksums(out).items() if k != "stats.json"} == \
           {k: v for k, v in checksums(alone).items() if k != "stats.json"}
    with np.load(out / "train.npz") as train, np.load(out / "test.npz") as test:
        assert not set(train["ids"]) & set(test["ids"])
    assert _leftovers(out) == []


def test_concurrent_synthetic_prepares_leave_one_complete_output(tmp_path):
    out = tmp_path / "syn"
    argv = ["prepare", "synthetic", "--out", str(out)]
    winner, _ = _one_won(_race(tmp_path, [*argv, "--seed", "0"], [*argv, "--seed", "1"]))
    seed = int(winner.args[-1])
    stats = [open_genome(out / "genome").stats, GBTask.load(out / "gb").stats, read_prepared(out / "speech")]
    assert [s["arguments"]["seed"] for s in stats] == [seed] * 3 and [s["seed"] for s in stats] == [seed] * 3
    for sub in ("genome", "gb", "speech"):
        assert _leftovers(out / sub) == []
    assert not list(out.glob("**/.synthetic-genome*"))


def test_second_prepare_fails_at_once_naming_the_holder(tmp_path):
    src = write_csv(tmp_path / "t.csv", "seq,label", [f"{random_dna(RNG, 40)},{i % 2}" for i in range(40)])
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with preparing(out, "genomic-benchmarks", {"held": "by this test"}):
        staged = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))  # a live run's staging folder
        run = subprocess.run([sys.executable, "-m", "bio_speech_dyt", "prepare", "genomic-benchmarks", "--dataset",
                              "toy", "--source", str(src), "--holdout-fraction", "0.5", "--out", str(out)],
                             env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 2
        assert f"{out} is being prepared by another process (pid {os.getpid()}); wait for it or use another --out" \
            in run.stderr
        assert staged.is_dir()  # the second run did not delete the first one's staging folder
        with pytest.raises(BusyError):  # in-process too (another open file description of the lock)
            with exclusive_lock(out):
                pass
        staged.rmdir()
    assert not out.exists()  # the holder made the folder and wrote nothing: it is gone again


# --- item 5: inputs are never written -------------------------------------------------------------


def test_hg38_input_is_never_an_output(tmp_path, capsys):
    folder = tmp_path / "dir"
    folder.mkdir()
    fasta = _genome(folder, "genome.fa.gz")
    before = fasta.read_bytes()
    with pytest.raises(OccupiedError, match=rf"{fasta} is an input of this prepare and {fasta} is where it writes"):
        prepare_hg38(fasta=fasta, bed=None, download=False, out=folder)
    assert bsd(["prepare", "hg38", "--fasta", str(fasta), "--out", str(folder)]) == 2
    assert "inputs are never overwritten; choose another --out" in capsys.readouterr().err
    out = tmp_path / "out"  # a hard link of the input where the output goes: the same file
    out.mkdir()
    os.link(fasta, out / "genome.fa.gz")
    with pytest.raises(OccupiedError, match="is an input of this prepare"):
        prepare_hg38(fasta=fasta, bed=None, download=False, out=out)
    bed = folder / "sequences.bed"
    bed.write_text("chr1\t0\t20000\ttrain\n")
    with pytest.raises(OccupiedError, match=r"sequences\.bed is an input"):
        prepare_hg38(fasta=_genome(tmp_path), bed=bed, download=False, out=folder)
    assert fasta.read_bytes() == before and sorted(p.name for p in folder.iterdir()) == ["genome.fa.gz",
                                                                                          "sequences.bed"]
    root = librispeech_tree(tmp_path / "ls" / "audio", {"dev-clean": ["1", "2"]}, utts=1, seconds=0.5)
    with pytest.raises(OccupiedError, match=r"audio is where it writes an output"):
        prepare_librispeech(root=root, out=tmp_path / "ls")


# --- item 7 (+17, 18): folders know their kind ------------------------------------------------------


def test_prepared_folders_know_their_kind(tmp_path, capsys):
    genome = tmp_path / "genome"
    prepare_hg38(fasta=_genome(tmp_path), bed=None, download=False, out=genome)
    stats_before = (genome / "stats.json").read_bytes()
    src = write_csv(tmp_path / "t.csv", "seq,label", [f"{random_dna(RNG, 40)},{i % 2}" for i in range(40)])
    with pytest.raises(OccupiedError, match=r"genome holds a prepared genome \(written by `bsd prepare hg38`\); a `bsd "
                                            r"prepare genomic-benchmarks` there would replace its files"):
        _gb(src, genome)
    assert (genome / "stats.json").read_bytes() == stats_before and open_genome(genome)
    msg = r"genome holds a prepared genome \(`bsd prepare hg38`\), not a {}; pass the folder written by `bsd prepare {}"
    with pytest.raises(NotPreparedError, match=msg.format("GenomicBenchmarks task", "genomic-benchmarks")):
        GBTask.load(genome)
    with pytest.raises(NotPreparedError, match=msg.format(r"speech corpus .*", "librispeech")):
        read_prepared(genome)
    gb = tmp_path / "gb"
    _gb(src, gb)
    with pytest.raises(NotPreparedError, match=r"gb holds a prepared GenomicBenchmarks task .*not a genome"):
        open_genome(gb)
    with pytest.raises(NotPreparedError, match=rf"{tmp_path}: not a prepared GenomicBenchmarks task .*; {gb} is one"):
        GBTask.load(tmp_path)  # the folder above: points at the task inside
    # a folder written before kinds were recorded still loads, its kind inferred
    for folder in (genome, gb):
        stats = json.loads((folder / "stats.json").read_text())
        del stats["kind"], stats["arguments"]
        (folder / "stats.json").write_text(json.dumps(stats))
    assert open_genome(genome).stats["contigs"] and GBTask.load(gb).num_classes == 2
    with pytest.raises(NotPreparedError, match="holds a prepared genome"):
        GBTask.load(genome)
    # unrelated files that a prepare would overwrite
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "labels.json").write_text("{}")
    with pytest.raises(OccupiedError, match=r"mine holds labels\.json, which no record .* move them away"):
        _gb(src, foreign)
    assert (foreign / "labels.json").read_text() == "{}"


def test_rerun_same_arguments_rebuilds_other_arguments_refused(tmp_path, capsys):
    src = write_csv(tmp_path / "t.csv", "seq,label", [f"{random_dna(RNG, 40)},{i % 2}" for i in range(40)])
    out = tmp_path / "gb"
    _gb(src, out, seed=0)
    expected = checksums(out)
    _gb(src, out, seed=0)
    assert "already holds this prepare's output; rebuilding it" in capsys.readouterr().out
    assert checksums(out) == expected
    with pytest.raises(OccupiedError, match=r"gb already holds a prepared GenomicBenchmarks task made with other "
                                            r"arguments \(seed: 0 there, 1 now\); remove it or choose another --out"):
        _gb(src, out, seed=1)
    assert checksums(out) == expected


# --- items 13/14: read-only, not a folder, disk full ------------------------------------------------


def test_out_that_is_a_file_or_lies_under_one(tmp_path):
    fasta = _genome(tmp_path)
    (tmp_path / "file").write_text("x")
    for out, says in ((tmp_path / "file", "is a file"), (tmp_path / "file" / "sub", f"lies under {tmp_path / 'file'}")):
        with pytest.raises(NotADirectoryError, match=rf"--out {out} {says}.*not a folder; choose another --out"):
            prepare_hg38(fasta=fasta, bed=None, download=False, out=out)
    assert (tmp_path / "file").read_text() == "x"


def test_read_only_out_names_the_folder(tmp_path, monkeypatch):
    fasta = _genome(tmp_path)
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: make writes in ``ro`` fail as they would for a user
        for name in ("open", "mkdir"):
            def deny(path, *a, _real=getattr(os, name), **kw):
                if str(path).startswith(str(ro)):
                    raise PermissionError(errno.EACCES, "Permission denied", str(path))
                return _real(path, *a, **kw)

            monkeypatch.setattr(os, name, deny)
    else:
        ro.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match=rf"cannot write in --out folder {ro}: Permission denied"):
            prepare_hg38(fasta=fasta, bed=None, download=False, out=ro)
        with pytest.raises(PermissionError, match=rf"cannot create --out folder {ro / 'sub'}: Permission denied"):
            prepare_hg38(fasta=fasta, bed=None, download=False, out=ro / "sub")
    finally:
        ro.chmod(0o755)
    assert not list(ro.iterdir())


@pytest.mark.parametrize("name", sorted(CASES))
def test_disk_full_keeps_previous_output_and_leaves_nothing(tmp_path, monkeypatch, name):
    src, out, prepare, load, expected = prepared_once(tmp_path, name)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:  # the last write of a prepare: its stats.json, in staging
        m.setattr(prepared, "write_json", full)
        with pytest.raises(OSError, match=rf"No space left on device while preparing into {out}") as e:
            prepare(src, out)
    assert e.value.errno == errno.ENOSPC
    assert checksums(out) == expected and _leftovers(out) == []
    load(out)
    if name == "gb":  # and an early one: the first token array
        with monkeypatch.context() as m:
            m.setattr(np, "savez", full)
            with pytest.raises(OSError, match=str(out)):
                prepare(src, out)
        assert checksums(out) == expected and _leftovers(out) == []
    fresh = tmp_path / "fresh"  # a first prepare that fails leaves no folder (speech: its converted audio)
    with monkeypatch.context() as m:
        m.setattr(prepared, "write_json", full)
        with pytest.raises(OSError):
            prepare(src, fresh)
    if name == "librispeech":
        assert _leftovers(fresh) == [] and sorted(p.name for p in fresh.iterdir()) == [".bsd-prepared", "audio"]
        with pytest.raises(NotPreparedError, match="no stats.json"):
            load(fresh)
    else:
        assert not fresh.exists()
