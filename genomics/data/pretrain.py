"""Pretraining datasets over a prepared genome: HyenaDNA (next token) and Caduceus (masked LM).

Windows. Both datasets tile every interval of the split into ``max_length`` windows:

* an interval no longer than ``max_length`` gives one window centred on it, filled out with the
  flanking genome (HyenaDNA's expansion of short intervals);
* a longer interval gives ``ceil(len / max_length)`` consecutive windows, the last one shifted
  back to end at the interval end (Caduceus' tiling of its regions into ``max_length`` chunks).
  HyenaDNA's own loader crops each 2^17-bp interval to a single window per epoch; tiling instead
  gives every base once per epoch, which a small genome (a fragment, the synthetic default) needs.
* a window reaching past a chromosome end is shifted back inside it; only a chromosome shorter
  than the window leaves [PAD] at its right end (targets/labels -100 there).

Randomness (reverse complement with probability ``rc_prob``, masking) is drawn from a generator
seeded by ``(seed, epoch, index)``: an item is the same in every run and after a resume, and
``set_epoch`` changes it between epochs. Only the window is read (pyfaidx); each DataLoader
worker opens its own FASTA handle lazily.
"""
from __future__ import annotations

import bisect
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from genomics.data.bed import SPLITS
from genomics.data.hg38 import open_genome
from genomics.tokenizer import A_ID, MASK_ID, PAD_ID, T_ID, reverse_complement_ids

IGNORE_INDEX = -100
_MASK64 = (1 << 64) - 1


class GenomeWindows(Dataset):
    """Token windows of ``span`` bases tiled over the intervals of one split (see module doc)."""

    def __init__(self, genome_dir: Path | str, split: str, max_length: int, *, extra: int = 0,
                 rc_prob: float = 0.0, seed: int = 0):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if max_length < 1:
            raise ValueError(f"max_length must be positive, got {max_length}")
        prepared = open_genome(Path(genome_dir))
        sel = prepared.intervals.select(split)
        if len(sel) == 0:
            raise ValueError(f"{genome_dir}: split {split!r} has no intervals")
        self.genome = prepared.genome
        self.max_length, self.span, self.rc_prob, self.seed, self.epoch = max_length, max_length + extra, rc_prob, seed, 0
        # plain Python lists: per-item lookups on them are several times cheaper than on numpy arrays
        self._chrom, self._start, self._end = [str(c) for c in sel.chrom], sel.start.tolist(), sel.end.tolist()
        per_interval = np.maximum(1, -(-(sel.end - sel.start) // max_length))
        self._first = np.concatenate([[0], np.cumsum(per_interval)]).tolist()

    def __len__(self) -> int:
        return self._first[-1]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def window(self, index: int) -> tuple[str, int]:
        """(chromosome, 0-based start) of window ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        k = bisect.bisect_right(self._first, index) - 1
        start, end, chrom = self._start[k], self._end[k], self._chrom[k]
        length, m = end - start, self.max_length
        if length <= m:
            pos = start - (m - length) // 2
        else:
            pos = min(start + (index - self._first[k]) * m, end - m)
        return chrom, max(0, min(pos, self.genome.lengths[chrom] - self.span))

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, self.epoch, index))

    def rc_coin(self, index: int) -> bool:
        """Whether item ``index`` is reverse-complemented this epoch (probability ``rc_prob``)."""
        # A splitmix64 hash of (seed, epoch, index): seeding a numpy Generator costs ~12 µs per item.
        x = (self.seed * 0x9E3779B97F4A7C15 + self.epoch * 0xBF58476D1CE4E5B9 + index + 1) & _MASK64
        for mult, shift in ((0xBF58476D1CE4E5B9, 30), (0x94D049BB133111EB, 27)):
            x = ((x ^ (x >> shift)) * mult) & _MASK64
        return ((x ^ (x >> 31)) >> 11) / 2.0**53 < self.rc_prob

    def tokens(self, index: int) -> np.ndarray:
        """int64 ids of the window (``span`` long, right-padded), reverse-complemented with ``rc_prob``."""
        chrom, pos = self.window(index)
        ids = self.genome.fetch_ids(chrom, pos, min(pos + self.span, self.genome.lengths[chrom])).astype(np.int64)
        if self.rc_prob > 0 and self.rc_coin(index):
            ids = reverse_complement_ids(ids)
        if ids.size < self.span:
            ids = np.concatenate([ids, np.full(self.span - ids.size, PAD_ID, dtype=np.int64)])
        return ids


class HyenaPretrainDataset(GenomeWindows):
    """Next-token windows: ``{"input_ids": x[:-1], "targets": x[1:]}`` of length ``max_length``.

    Each window reads ``max_length + 1`` bases so inputs and targets are both ``max_length`` long;
    [PAD] targets are -100.
    """

    def __init__(self, genome_dir: Path | str, split: str, max_length: int, rc_prob: float = 0.0, seed: int = 0):
        super().__init__(genome_dir, split, max_length, extra=1, rc_prob=rc_prob, seed=seed)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ids = self.tokens(index)
        targets = ids[1:]
        if ids[-1] == PAD_ID:  # windows are right-padded only
            targets = np.where(targets == PAD_ID, IGNORE_INDEX, targets)
        return {"input_ids": torch.from_numpy(ids[:-1]), "targets": torch.from_numpy(targets)}


class CaduceusMLMDataset(GenomeWindows):
    """Masked-LM windows: ``{"input_ids", "labels"}`` of length ``max_length`` (BERT 80/10/10 masking).

    Each non-[PAD] position is selected with probability ``mlm_probability``; a selected position
    becomes [MASK] (80%), a uniformly random base (10%) or stays (10%). ``labels`` hold the
    original id at selected positions and -100 elsewhere, so the loss covers masked positions only.
    """

    def __init__(self, genome_dir: Path | str, split: str, max_length: int, mlm_probability: float = 0.15,
                 rc_prob: float = 0.0, seed: int = 0):
        super().__init__(genome_dir, split, max_length, rc_prob=rc_prob, seed=seed)
        self.mlm_probability = mlm_probability

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ids = self.tokens(index)
        rng = self.rng(index)
        select_u, action = rng.random((2, ids.size))
        selected = (select_u < self.mlm_probability) & (ids != PAD_ID)
        labels = np.where(selected, ids, IGNORE_INDEX)
        inputs = ids.copy()
        inputs[selected & (action < 0.8)] = MASK_ID
        randomised = selected & (action >= 0.8) & (action < 0.9)
        inputs[randomised] = rng.integers(A_ID, T_ID + 1, size=int(randomised.sum()))
        return {"input_ids": torch.from_numpy(inputs), "labels": torch.from_numpy(labels)}
