"""GenomicBenchmarks tasks: ``bsd prepare genomic-benchmarks``, the prepared-task loader, the eval splits.

Prepared layout (``out``)::

    labels.json        class name -> id (sorted class names -> 0..K-1)
    train.npz          input_ids uint8 [N, max_length] (left-padded with [PAD]), labels int64 [N],
    test.npz           lengths int64 [N] (source length, before cropping), ids str [N]
    stats.json         {"dataset", "max_length", "padding": "left",
                        "splits": {split: {"total", "per_class", "length": {min, max, mean}, "cropped", "padded"}},
                        "published": {"train", "test"} | null, "source", "source_kind",
                        "holdout_fraction", "seed", "skipped_empty", "iupac_to_n"}

Sequences longer than ``max_length`` are centre-cropped; shorter ones are left-padded (HyenaDNA's
GenomicBenchmarks padding side). Integer labels in a CSV index the sorted class names of a known
task (0 = negative, 1 = positive for the binary ones).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from bio_speech_dyt.io import atomic_path, write_json
from bio_speech_dyt.prepared import STATS, DataError, preparing, publish, read_stats, resolved, staging
from genomics.data.fasta import GENOME_FASTA, Genome, convert_fasta, index_fasta
from genomics.data.gb_sources import Example, download_package_layout, read_source
from genomics.data.gb_tasks import KNOWN_TASKS, KnownTask
from genomics.data.hg38 import open_genome
from genomics.tokenizer import PAD_ID, bytes_to_ids, normalise_bytes, reverse_complement_ids

LABELS = "labels.json"
PADDING = "left"
KIND = "genomic-benchmarks"


# --- labels and splits ---------------------------------------------------------------------------


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def resolve_labels(examples: list[Example], dataset: str, known: KnownTask | None) -> tuple[list[str], np.ndarray]:
    """Sorted class names and each example's class id; unknown labels raise naming file and line."""
    raw = sorted({ex.label for ex in examples})
    if known is not None:
        classes = list(known.classes)
    elif raw and all(_is_int(r) for r in raw):
        classes = [str(i) for i in sorted({int(r) for r in raw})]
    else:
        classes = raw
    index = {name: i for i, name in enumerate(classes)}
    ids = np.empty(len(examples), dtype=np.int64)
    for i, ex in enumerate(examples):
        label = ex.label
        if label in index:
            ids[i] = index[label]
        elif known is not None and _is_int(label) and 0 <= int(label) < len(classes):
            ids[i] = int(label)
        elif known is None and _is_int(label) and str(int(label)) in index:
            ids[i] = index[str(int(label))]
        else:
            raise DataError(f"{ex.where}: unknown label {label!r} for {dataset} (classes: {', '.join(classes)}, "
                            f"or their ids 0..{len(classes) - 1})")
    return classes, ids


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, class-stratified split: ``(kept, held_out)`` sorted indices; per class ``round(fraction * n)`` held out."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        held.append(members[: int(round(fraction * members.size))])
    held_idx = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    kept = np.setdiff1d(np.arange(labels.size), held_idx)
    return kept, held_idx


def gb_train_val_split(num_or_labels: int | np.ndarray | torch.Tensor, seed: int, val_fraction: float = 0.1
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The evaluation protocol's per-seed train/validation split of a task's train set.

    Given labels the split is class-stratified; given a count it is a plain seeded split.
    Returns ``(train_indices, val_indices)``.
    """
    if isinstance(num_or_labels, (int, np.integer)):
        labels = np.zeros(int(num_or_labels), dtype=np.int64)
    else:
        labels = np.asarray(num_or_labels.cpu() if isinstance(num_or_labels, torch.Tensor) else num_or_labels)
    return stratified_split(labels, val_fraction, seed)


# --- writing a task ------------------------------------------------------------------------------


@dataclass
class TaskSplit:
    examples: list[Example]
    labels: np.ndarray


def _check_duplicates(split: str, part: TaskSplit, classes: list[str]) -> None:
    seen: dict[tuple[int, str], Example] = {}
    for ex, label in zip(part.examples, part.labels):
        key = (int(label), ex.id)
        if key in seen:
            raise DataError(f"{ex.where}: duplicate id {ex.id!r} in {split}/{classes[label]} (first: {seen[key].where})")
        seen[key] = ex


def _tokenize(part: TaskSplit, max_length: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Left-padded, centre-cropped uint8 ids [N, max_length], source lengths, IUPAC count."""
    ids = np.full((len(part.examples), max_length), PAD_ID, dtype=np.uint8)
    lengths = np.empty(len(part.examples), dtype=np.int64)
    iupac = 0
    for i, ex in enumerate(part.examples):
        canon, n_iupac, _ = normalise_bytes(ex.seq.encode("utf-8", "surrogateescape"), source=ex.where, record=ex.id)
        iupac += n_iupac
        lengths[i] = canon.size
        if canon.size > max_length:
            lo = (canon.size - max_length) // 2
            canon = canon[lo : lo + max_length]
        ids[i, max_length - canon.size :] = bytes_to_ids(canon)
    return ids, lengths, iupac


def _split_stats(part: TaskSplit, lengths: np.ndarray, classes: list[str], max_length: int) -> dict:
    counts = np.bincount(part.labels, minlength=len(classes))
    return {
        "total": int(part.labels.size),
        "per_class": {name: int(n) for name, n in zip(classes, counts)},
        "length": {"min": int(lengths.min()), "max": int(lengths.max()), "mean": round(float(lengths.mean()), 2)},
        "cropped": int(np.count_nonzero(lengths > max_length)),
        "padded": int(np.count_nonzero(lengths < max_length)),
    }


def write_task(out: Path, dataset: str, splits: dict[str, TaskSplit], classes: list[str],
               max_length: int | None = None, extra_stats: dict | None = None) -> dict:
    """Tokenize ``splits`` and write the prepared-task layout into ``out`` (staged, marker last);
    runs inside :func:`~bio_speech_dyt.prepared.preparing` for ``out``."""
    known = KNOWN_TASKS.get(dataset)
    if max_length is None:
        max_length = known.max_length if known else max(len(ex.seq) for p in splits.values() for ex in p.examples)
        if known is None:
            print(f"note: {dataset} is not a known GenomicBenchmarks task; max_length = longest sequence = {max_length}")
    stats = {"dataset": dataset, "max_length": int(max_length), "padding": PADDING, "splits": {}, "iupac_to_n": 0,
             "published": {"train": known.train, "test": known.test} if known else None, **(extra_stats or {})}
    source = stats.get("source", dataset)
    with staging(out) as tmp:
        for split, part in splits.items():
            if not part.examples:
                raise DataError(f"{source}: split {split!r} is empty")
            present = sorted({classes[i] for i in part.labels.tolist()})
            if len(present) < 2:
                raise DataError(f"{source}: the {split} split holds only class {present[0]!r} "
                                f"({len(part.examples):,} examples): a classification task needs at least 2 classes in "
                                "train and in test; check the label column / class folders")
            ids, lengths, iupac = _tokenize(part, max_length)
            stats["iupac_to_n"] += iupac
            stats["splits"][split] = _split_stats(part, lengths, classes, max_length)
            with atomic_path(tmp / f"{split}.npz") as path, open(path, "wb") as fh:
                np.savez(fh, input_ids=ids, labels=part.labels, lengths=lengths,
                         ids=np.array([ex.id for ex in part.examples], dtype=str))
        write_json(tmp / LABELS, {name: i for i, name in enumerate(classes)})
        _print_summary(stats)
        return publish(tmp, out, stats)


def _print_summary(stats: dict) -> None:
    print(f"{stats['dataset']}: max_length {stats['max_length']}")
    for split, s in stats["splits"].items():
        per_class = ", ".join(f"{k} {v:,}" for k, v in s["per_class"].items())
        print(f"  {split:5s}: {s['total']:>8,} ({per_class}); length {s['length']['min']}-{s['length']['max']}, "
              f"{s['cropped']:,} cropped, {s['padded']:,} padded")
    published = stats.get("published")
    if published and any(stats["splits"].get(k, {}).get("total") != v for k, v in published.items()):
        print(f"  note: the published split sizes are train {published['train']:,} / test {published['test']:,}")


# --- prepare ------------------------------------------------------------------------------------


def _open_fasta(fasta: Path, scratch: Path) -> Genome:
    """A prepared genome folder (or its genome.fa.gz) is used in place; any other FASTA is converted into ``scratch``."""
    fasta = Path(fasta)
    prepared_dir = fasta if fasta.is_dir() else fasta.parent if fasta.name == GENOME_FASTA else None
    if prepared_dir is not None and (prepared_dir / STATS).is_file():
        return open_genome(prepared_dir).genome
    if not fasta.is_file():
        raise FileNotFoundError(f"--fasta {fasta} not found")
    scratch.mkdir(parents=True, exist_ok=True)
    convert_fasta(fasta, scratch / GENOME_FASTA)
    index_fasta(scratch / GENOME_FASTA)
    return Genome(scratch / GENOME_FASTA)


def prepare_genomic_benchmarks(*, dataset: str, source: Path | None, fasta: Path | None, download: bool,
                               holdout_fraction: float | None, seed: int, out: Path) -> dict:
    """Prepare GenomicBenchmarks task ``dataset`` from ``source`` (or ``--download``) into ``out``."""
    out = Path(out)
    if source is None and not download:
        raise ValueError("prepare genomic-benchmarks: give --source PATH or --download")
    arguments = {"dataset": dataset, "source": resolved(source), "fasta": resolved(fasta), "download": download,
                 "holdout_fraction": holdout_fraction, "seed": seed}
    with preparing(out, KIND, arguments, inputs=(source, fasta)):
        if download:
            source = download_package_layout(dataset)
        return _prepare(dataset, Path(source), fasta, holdout_fraction, seed, out)


def _prepare(dataset: str, source: Path, fasta: Path | None, holdout_fraction: float | None, seed: int,
             out: Path) -> dict:
    scratch = out / ".fasta-scratch"
    try:
        genome = _open_fasta(fasta, scratch) if fasta is not None else None
        data = read_source(source, genome)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if data.skipped_empty:
        print(f"skipped {data.skipped_empty:,} empty sequences in {source}")
    known = KNOWN_TASKS.get(dataset)
    everything = [ex for part in data.splits.values() for ex in part]
    classes, labels = resolve_labels(everything, dataset, known)
    bounds = np.cumsum([0] + [len(p) for p in data.splits.values()])
    parts = {split: TaskSplit(p, labels[bounds[i] : bounds[i + 1]]) for i, (split, p) in enumerate(data.splits.items())}
    for split, part in parts.items():
        _check_duplicates(split, part, classes)
    if holdout_fraction is not None:
        if len(parts) != 1:
            raise DataError(f"{source}: --holdout-fraction needs a single-split source; this one has {', '.join(parts)}")
        (only,) = parts.values()
        kept, held = stratified_split(only.labels, holdout_fraction, seed)
        parts = {split: TaskSplit([only.examples[i] for i in idx], only.labels[idx])
                 for split, idx in (("train", kept), ("test", held))}
    elif set(parts) != {"train", "test"}:
        raise DataError(f"{source}: has only the split(s) {', '.join(parts)}; "
                        "give --holdout-fraction F --seed S to make a stratified train/test split")
    extra = {"source": str(source), "source_kind": data.kind, "holdout_fraction": holdout_fraction, "seed": seed,
             "skipped_empty": data.skipped_empty}
    return write_task(out, dataset, {"train": parts["train"], "test": parts["test"]}, classes, extra_stats=extra)


# --- loading ------------------------------------------------------------------------------------


@dataclass
class GBTask:
    """A prepared GenomicBenchmarks task folder."""

    directory: Path
    name: str
    labels: dict[str, int]
    max_length: int
    stats: dict

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @classmethod
    def load(cls, directory: Path | str) -> GBTask:
        directory = Path(directory)
        stats = read_stats(directory, KIND)
        labels = json.loads((directory / LABELS).read_text())
        return cls(directory, stats["dataset"], labels, int(stats["max_length"]), stats)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids LongTensor[N, max_length] left-padded with [PAD], labels LongTensor[N])``."""
        path = self.directory / f"{name}.npz"
        if name not in self.stats["splits"] or not path.is_file():
            raise FileNotFoundError(f"{path}: no {name!r} split in {self.directory}")
        with np.load(path) as data:
            return torch.from_numpy(data["input_ids"].astype(np.int64)), torch.from_numpy(data["labels"])


class GBDataset(Dataset):
    """Items ``{"input_ids", "label"}`` (+ ``"input_ids_rc"`` when ``conjoin``).

    ``rc_prob``: reverse-complement augmentation of the sequence itself, padding kept on its side
    (drawn per ``(seed, epoch, index)``). ``conjoin``: also return ``reverse_complement_ids`` of the
    (possibly augmented) ids — the exact flip, so padding moves to the other side, as an
    RC-equivariant model expects.
    """

    def __init__(self, input_ids: torch.Tensor, labels: torch.Tensor, rc_prob: float = 0.0, conjoin: bool = False,
                 seed: int = 0):
        if input_ids.shape[0] != labels.shape[0]:
            raise ValueError(f"{input_ids.shape[0]} sequences but {labels.shape[0]} labels")
        self.input_ids, self.labels, self.rc_prob, self.conjoin, self.seed, self.epoch = input_ids, labels, rc_prob, conjoin, seed, 0

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ids = self.input_ids[index]
        if self.rc_prob > 0 and np.random.default_rng((self.seed, self.epoch, index)).random() < self.rc_prob:
            ids = ids.clone()
            content = ids != PAD_ID
            ids[content] = reverse_complement_ids(ids[content])
        item = {"input_ids": ids, "label": self.labels[index]}
        if self.conjoin:
            item["input_ids_rc"] = reverse_complement_ids(ids)
        return item
