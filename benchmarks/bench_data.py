"""Genomics data-loading throughput: tokenized 1 kb windows per second in one worker.

Source: the bgzipped real hg38 sample (chr2 fragment, via BSD_REAL_DATA) when present, else the
synthetic genome; prepared into a temporary folder first. Windows are read in a seeded random
order (what a shuffling DataLoader does). Target: ≥ 20,000 HyenaDNA windows/s per worker.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from genomics.data.hg38 import prepare_hg38
from genomics.data.pretrain import CaduceusMLMDataset, HyenaPretrainDataset
from genomics.data.synthetic import prepare_synthetic_genomics

REPO = Path(__file__).resolve().parents[1]


def _genome(tmp: Path) -> tuple[Path, str]:
    real = Path(os.environ.get("BSD_REAL_DATA", REPO.parent / "shared" / "data")) / "hg38_sample" / "chr2_1-2333275.fa.gz"
    if real.is_file():
        prepare_hg38(fasta=real, bed=None, download=False, out=tmp / "hg38", seed=0)
        return tmp / "hg38", f"real hg38 sample ({real.name})"
    prepare_synthetic_genomics(tmp / "synthetic", seed=0)
    return tmp / "synthetic" / "genome", "synthetic genome"


def _rate(dataset, n: int) -> float:
    order = np.random.default_rng(0).integers(0, len(dataset), size=n)
    for i in order[:50]:  # warm the handle and the block cache
        dataset[int(i)]
    start = time.perf_counter()
    for i in order:
        dataset[int(i)]
    return n / (time.perf_counter() - start)


def main(full: bool = False, out: Path = Path("benchmarks/results")) -> dict:
    n = 20_000 if full else 3_000
    lengths = (1024, 4096, 16384) if full else (1024,)
    with tempfile.TemporaryDirectory() as tmp:
        genome_dir, source = _genome(Path(tmp))
        rows = []
        for length in lengths:
            for name, ds in (
                ("hyena", HyenaPretrainDataset(genome_dir, "train", length)),
                ("hyena rc_prob=0.5", HyenaPretrainDataset(genome_dir, "train", length, rc_prob=0.5)),
                ("caduceus mlm", CaduceusMLMDataset(genome_dir, "train", length, rc_prob=0.5)),
            ):
                rate = _rate(ds, n if length == 1024 else n // 4)
                rows.append({"dataset": name, "max_length": length, "windows_per_s": round(rate, 1),
                             "bases_per_s": round(rate * length)})
    result = {"benchmark": "data", "source": source, "hardware": f"{platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores, 1 worker (in-process)", "target_windows_per_s_1k": 20_000, "rows": rows}
    print(f"data loading — {source}; {result['hardware']}")
    print(f"{'dataset':<20}{'max_length':>11}{'windows/s':>12}{'Mbases/s':>10}")
    for r in rows:
        print(f"{r['dataset']:<20}{r['max_length']:>11}{r['windows_per_s']:>12,.0f}{r['bases_per_s'] / 1e6:>10.1f}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_data.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
