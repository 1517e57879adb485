"""What the report compares: metric specs with units, GenomicBenchmarks accuracy entries and
the paper's reference numbers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bio_speech_dyt.report.runs import Run, as_number

THROUGHPUT_UNITS = {"tokens_per_s": "tokens/s", "samples_per_s": "samples/s"}


def loss_unit(run: Run, key: str) -> str:
    """Unit of a loss of ``run``: bits for ``*_bits``, else the ``loss_unit`` its task recorded in
    metrics.json (nats/token, nats/sequence, bits, ...), else the raw loss."""
    if key.endswith("_bits"):
        return "bits"
    return str(run.metrics.get("loss_unit") or "raw loss")


@dataclass(frozen=True)
class MetricSpec:
    """One table of the report: a ``metrics.json`` key, compared as a difference or a ratio."""

    key: str
    title: str
    fmt: str = "{:.4f}"
    ratio: bool = False  # compare DyT/LN instead of DyT−LN
    unit: str | None = None  # None: a loss, unit from the run (loss_unit)
    context: tuple[str, ...] = ()  # keys shown beside it, the same for both norms (e.g. data baselines)

    def unit_for(self, run: Run) -> str:
        return self.unit if self.unit is not None else loss_unit(run, self.key)


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("valid_loss", "Validation loss (final)", context=("baseline_kmer_loss", "baseline_unigram_loss")),
    MetricSpec("train_loss", "Training loss (last step)"),
    MetricSpec("valid_loss_bits", "wav2vec 2.0 validation loss", unit="bits"),
    MetricSpec("contrastive_bits", "wav2vec 2.0 contrastive loss", unit="bits"),
    MetricSpec("diversity_bits", "wav2vec 2.0 codebook diversity loss", unit="bits"),
    MetricSpec("penalty_bits", "wav2vec 2.0 feature penalty", unit="bits"),
    MetricSpec("contrastive_accuracy", "Contrastive accuracy (true target ranked first)", "{:.3f}", unit="fraction"),
    MetricSpec("tokens_per_s", "Training throughput", "{:,.0f}", ratio=True, unit="tokens/s"),
    MetricSpec("samples_per_s", "Training throughput", "{:,.1f}", ratio=True, unit="samples/s"),
    MetricSpec("num_parameters", "Parameters", "{:,.0f}", unit="count"),
)

# Zhu et al., CVPR 2025 (GPU scale, full data): LN-family norm vs DyT
PAPER_REFERENCE: tuple[dict[str, Any], ...] = (
    {"domain": "speech", "model": "wav2vec 2.0 Base", "metric": "validation loss", "unit": "bits", "ln": 1.95, "dyt": 1.95},
    {"domain": "speech", "model": "wav2vec 2.0 Large", "metric": "validation loss", "unit": "bits", "ln": 1.92, "dyt": 1.91},
    {"domain": "genomics", "model": "HyenaDNA", "metric": "GenomicBenchmarks mean accuracy", "unit": "%", "ln": 85.2, "dyt": 85.2},
    {"domain": "genomics", "model": "Caduceus", "metric": "GenomicBenchmarks mean accuracy", "unit": "%", "ln": 86.9, "dyt": 86.9},
)


@dataclass
class GBEntry:
    """GenomicBenchmarks test accuracy of one run on one dataset (fractions in [0, 1])."""

    dataset: str
    accuracy: float
    std: float | None
    per_seed: list[tuple[str, float]]

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "test_accuracy": self.accuracy, "test_accuracy_std": self.std,
                "per_seed": dict(self.per_seed)}


def _seed_accuracies(per_seed: Any) -> list[tuple[str, float]]:
    """``per_seed`` as ``[(seed, accuracy)]``; accepts ``{seed: acc}``, ``{seed: {test_accuracy}}``,
    ``[acc, ...]`` or ``[{seed, test_accuracy}, ...]``."""
    if isinstance(per_seed, dict):
        items = list(per_seed.items())
    elif isinstance(per_seed, list):
        items = [(v.get("seed", i) if isinstance(v, dict) else i, v) for i, v in enumerate(per_seed)]
    else:
        return []
    out = []
    for seed, v in items:
        acc = as_number(v.get("test_accuracy") if isinstance(v, dict) else v)
        if acc is not None:
            out.append((str(seed), acc))
    return out


def _entry(name: str, data: dict) -> GBEntry | None:
    acc = as_number(data.get("test_accuracy"))
    if acc is None:
        return None
    return GBEntry(name, acc, as_number(data.get("test_accuracy_std")), _seed_accuracies(data.get("per_seed")))


def gb_entries(run: Run) -> list[GBEntry]:
    """The run's GenomicBenchmarks results: one entry per dataset under ``tasks`` (or
    ``datasets``), else the flat top level as one dataset (named by its ``task``/``dataset``
    key or the last part of ``data.path``)."""
    m = run.metrics
    for group in ("tasks", "datasets"):
        if isinstance(m.get(group), dict):
            entries = [_entry(str(name), v) for name, v in m[group].items() if isinstance(v, dict)]
            if any(entries):
                return [e for e in entries if e is not None]
    data_name = str(run.section("data").get("path") or "").rstrip("/").rsplit("/", 1)[-1]
    entry = _entry(str(m.get("task") or m.get("dataset") or data_name or "dataset"), m)
    return [entry] if entry else []
