"""The GenomicBenchmarks tasks of the HyenaDNA/Caduceus suite: class names, published sizes, max_length.

``max_length`` is the sequence length the HyenaDNA/Caduceus GenomicBenchmarks recipes use;
split sizes are the published ones (genomic-benchmarks README / ``tests/data_check``).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KnownTask:
    classes: tuple[str, ...]  # sorted: id = position
    max_length: int
    train: int
    test: int


_BINARY = ("negative", "positive")

KNOWN_TASKS: dict[str, KnownTask] = {
    "dummy_mouse_enhancers_ensembl": KnownTask(_BINARY, 1024, 968, 242),
    "demo_coding_vs_intergenomic_seqs": KnownTask(("coding_seqs", "intergenomic_seqs"), 200, 75_000, 25_000),
    "demo_human_or_worm": KnownTask(("human", "worm"), 200, 75_000, 25_000),
    "human_enhancers_cohn": KnownTask(_BINARY, 500, 20_843, 6_948),
    "human_enhancers_ensembl": KnownTask(_BINARY, 512, 123_872, 30_970),
    "human_ensembl_regulatory": KnownTask(("enhancer", "ocr", "promoter"), 512, 231_348, 57_713),
    "human_nontata_promoters": KnownTask(_BINARY, 251, 27_097, 9_034),
    "human_ocr_ensembl": KnownTask(_BINARY, 512, 139_804, 34_952),
    "drosophila_enhancers_stark": KnownTask(_BINARY, 3072, 5_184, 1_730),
}

#: The eight tasks HyenaDNA and Caduceus report (drosophila_enhancers_stark is extra).
SUITE = tuple(name for name in KNOWN_TASKS if name != "drosophila_enhancers_stark")
