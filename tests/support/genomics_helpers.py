"""Shared helpers for the genomics tests: tiny FASTA/CSV writers and the real-data fixture."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
from Bio import bgzf

REPO = Path(__file__).resolve().parents[2]


def real_data_dir() -> Path:
    return Path(os.environ.get("BSD_REAL_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def real_data() -> Path:
    """The shared real samples (``BSD_REAL_DATA``); skips when absent."""
    root = real_data_dir()
    if not (root / "hg38_sample").is_dir() or not (root / "genomic_benchmarks").is_dir():
        pytest.skip(f"real data not found at {root} (set BSD_REAL_DATA)")
    return root


def random_dna(rng: np.random.Generator, n: int) -> str:
    return np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, n)].tobytes().decode()


def write_fasta(path: Path, records: dict[str, str], compression: str | None = None, width: int = 60) -> Path:
    """Write ``records`` as FASTA: plain, ``"gzip"`` or ``"bgzip"``."""
    text = "".join(f">{name} description\n" + "".join(seq[i : i + width] + "\n" for i in range(0, len(seq), width))
                   for name, seq in records.items()).encode()
    if compression == "gzip":
        path.write_bytes(gzip.compress(text))
    elif compression == "bgzip":
        with bgzf.BgzfWriter(str(path), "wb") as fh:
            fh.write(text)
    else:
        path.write_bytes(text)
    return path


def write_bed(path: Path, rows: list[tuple[str, int, int, str]]) -> Path:
    path.write_text("".join(f"{c}\t{s}\t{e}\t{p}\n" for c, s, e, p in rows))
    return path


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    text = header + "\n" + "".join(r + "\n" for r in rows)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path
