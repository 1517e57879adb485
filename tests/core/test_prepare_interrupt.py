"""Interrupt-safe preparation: a prepare killed at any file move, re-run, gives the same bytes
as an uninterrupted run; a half-published or corrupted folder is refused, never read."""
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from tests.support.genomics_helpers import random_dna, write_csv, write_fasta
from tests.support.speech_helpers import librispeech_tree, write_flac

from bio_speech_dyt.prepared import NotPreparedError
from genomics.data.gb import GBTask, prepare_genomic_benchmarks
from genomics.data.hg38 import open_genome, prepare_hg38
from speech.data.prepare import prepare_librispeech, read_prepared


class Crash(BaseException):
    """Stands in for SIGKILL at a chosen point (BaseException: nothing may catch it)."""


def checksums(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` (converted audio too; links read through), hidden ones included."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _crash_at(monkeypatch, k: int | None) -> dict:
    """Make the k-th ``os.replace`` (every atomic write and every publish move) die; count calls."""
    calls = {"n": 0}
    real = os.replace

    def replace(src, dst):
        calls["n"] += 1
        if calls["n"] == k:
            raise Crash(f"killed before move {k}")
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    return calls


def _genome_inputs(tmp_path):
    rng = np.random.default_rng(0)
    return write_fasta(tmp_path / "in.fa.gz", {"chr1": random_dna(rng, 20_000), "chr2": random_dna(rng, 9_000)}, "gzip")


def _gb_inputs(tmp_path):
    rng = np.random.default_rng(1)
    rows = [f"{random_dna(rng, 50)},{i % 2}" for i in range(60)]
    return write_csv(tmp_path / "task.csv", "seq,label", rows)


def _librispeech_inputs(tmp_path):
    """Two subsets, one 22.05 kHz stereo file (converted under OUT/audio, the others linked there)
    and one unreadable file (listed in skipped.tsv)."""
    root = librispeech_tree(tmp_path / "in", {"train-clean-100": ["11", "12", "13"], "dev-clean": ["21"]},
                            seconds=1.0)
    write_flac(root / "train-clean-100" / "11" / "1011" / "11-1011-0002.flac", 1.0, rate=22050, channels=2)
    (root / "train-clean-100" / "12" / "1012" / "12-1012-0009.flac").write_text("not audio")
    return root


CASES = {
    "hg38": (_genome_inputs, lambda src, out: prepare_hg38(fasta=src, bed=None, download=False, out=out, seed=0), open_genome),
    "gb": (_gb_inputs, lambda src, out: prepare_genomic_benchmarks(
        dataset="toy", source=src, fasta=None, download=False, holdout_fraction=0.25, seed=0, out=out), GBTask.load),
    "librispeech": (_librispeech_inputs, lambda src, out: prepare_librispeech(
        root=src, valid_fraction=0.25, seed=0, resample=True, downmix=True, out=out), read_prepared),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_killed_prepare_reruns_to_identical_output(tmp_path, monkeypatch, name):
    make_input, prepare, load = CASES[name]
    src = make_input(tmp_path)
    out = tmp_path / "out"  # always the same path: manifests and stats.json may name it
    with monkeypatch.context() as m:
        moves = _crash_at(m, None)
        prepare(src, out)
    expected = checksums(out)
    assert moves["n"] >= sum(p.is_file() for p in out.iterdir())  # every output file arrives by a move
    for k in range(1, moves["n"] + 1):
        for previous in (False, True):  # a fresh folder, or re-preparing over a complete one
            shutil.rmtree(out)
            if previous:
                prepare(src, out)
            with monkeypatch.context() as m:
                _crash_at(m, k)
                with pytest.raises(Crash):
                    prepare(src, out)
            try:  # either refused, or the previous complete output, untouched
                load(out)
                assert previous and checksums(out) == expected
            except NotPreparedError as e:
                assert "no stats.json" in str(e)
            prepare(src, out)
            assert checksums(out) == expected, f"killed at move {k}"
            load(out)


def prepared_once(tmp_path: Path, name: str):
    """``(src, out, prepare, load, checksums of out)`` after one prepare of case ``name`` into ``tmp_path/out``."""
    make_input, prepare, load = CASES[name]
    src = make_input(tmp_path)
    out = tmp_path / "out"
    prepare(src, out)
    return src, out, prepare, load, checksums(out)


@pytest.mark.parametrize("victim", ["largest", "stats.json"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_corrupted_output_detected_then_rebuilt(tmp_path, name, victim):
    src, out, prepare, load, expected = prepared_once(tmp_path, name)
    if victim == "largest":  # for librispeech: train.tsv, the manifest
        victim = max((p for p in out.iterdir() if p.is_file() and p.name != "stats.json"), key=lambda p: p.stat().st_size)
        problem = f"{victim.name} has .* bytes.*corrupted"
    else:
        victim, problem = out / victim, "stats.json is not a JSON object.*corrupted"
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])  # a truncated file
    with pytest.raises(NotPreparedError, match=problem):
        load(out)
    prepare(src, out)
    assert checksums(out) == expected
    load(out)
