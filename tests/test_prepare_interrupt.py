"""Interrupt-safe preparation: a prepare killed at any file move, re-run, gives the same bytes
as an uninterrupted run; a half-published or corrupted folder is refused, never read."""
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

import genomics.data.layout as layout
from genomics.data.gb import GBTask, prepare_genomic_benchmarks
from genomics.data.hg38 import open_genome, prepare_hg38
from genomics.data.layout import NotPreparedError
from genomics_helpers import random_dna, write_csv, write_fasta


class Crash(BaseException):
    """Stands in for SIGKILL at a chosen point (BaseException: nothing may catch it)."""


def checksums(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _crash_at(monkeypatch, k: int | None) -> dict:
    """Make the k-th ``os.replace`` (every atomic write and every publish move) die; count calls."""
    calls = {"n": 0}
    real = os.replace

    def replace(src, dst):
        calls["n"] += 1
        if calls["n"] == k:
            raise Crash(f"killed before move {k}")
        real(src, dst)

    monkeypatch.setattr(layout.os, "replace", replace)
    return calls


def _genome_inputs(tmp_path):
    rng = np.random.default_rng(0)
    return write_fasta(tmp_path / "in.fa.gz", {"chr1": random_dna(rng, 20_000), "chr2": random_dna(rng, 9_000)}, "gzip")


def _gb_inputs(tmp_path):
    rng = np.random.default_rng(1)
    rows = [f"{random_dna(rng, 50)},{i % 2}" for i in range(60)]
    return write_csv(tmp_path / "task.csv", "seq,label", rows)


CASES = {
    "hg38": (_genome_inputs, lambda src, out: prepare_hg38(fasta=src, bed=None, download=False, out=out, seed=0), open_genome),
    "gb": (_gb_inputs, lambda src, out: prepare_genomic_benchmarks(
        dataset="toy", source=src, fasta=None, download=False, holdout_fraction=0.25, seed=0, out=out), GBTask.load),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_killed_prepare_reruns_to_identical_output(tmp_path, monkeypatch, name):
    make_input, prepare, load = CASES[name]
    src = make_input(tmp_path)
    clean = tmp_path / "clean"
    with monkeypatch.context() as m:
        moves = _crash_at(m, None)
        prepare(src, clean)
    expected = checksums(clean)
    assert moves["n"] >= len(expected)
    for k in range(1, moves["n"] + 1):
        for previous in (False, True):  # a fresh folder, or re-preparing over a complete one
            out = tmp_path / f"killed{k}{previous}"
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


@pytest.mark.parametrize("name", sorted(CASES))
def test_corrupted_output_detected_then_rebuilt(tmp_path, name):
    make_input, prepare, load = CASES[name]
    src = make_input(tmp_path)
    out = tmp_path / "out"
    prepare(src, out)
    expected = checksums(out)
    victim = max((p for p in out.iterdir() if p.name != "stats.json"), key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])  # a truncated file
    with pytest.raises(NotPreparedError, match=f"{victim.name} has .* bytes.*corrupted"):
        load(out)
    prepare(src, out)
    assert checksums(out) == expected
    load(out)
