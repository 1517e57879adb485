"""Audio dataset over a manifest, batches by total samples, crop-to-shortest collation.

As fairseq's ``FileAudioDataset`` + ``batch_by_size``: utterances shorter than
``min_sample_size`` are dropped (counted and printed), each utterance counts as
``min(num_samples, max_sample_size)`` samples, a batch holds at most ``max_tokens`` samples
(batch size × its longest utterance), and the collated batch is cropped to its shortest
utterance, so there is no padding. Batches are indexed by optimizer step (exact resume and
DDP sharding through the harness's ``StepBatchSampler`` hooks). Training crops at offsets
drawn from ``(seed, step)``; validation crops the centre, so it never depends on an RNG.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from bio_speech_dyt.train.sampling import StepBatchSampler
from speech.data.audio import load_waveform
from speech.data.manifest import read_manifest


class AudioDataset(Dataset):
    """Waveforms listed in a fairseq manifest (16 kHz mono, prepared by ``bsd prepare``)."""

    def __init__(self, manifest: Path, min_sample_size: int = 0, max_sample_size: int | None = None):
        self.manifest = read_manifest(manifest)
        self.max_sample_size = max_sample_size
        keep = [i for i, n in enumerate(self.manifest.sizes) if n >= min_sample_size]
        self.dropped = len(self.manifest) - len(keep)
        if self.dropped:
            print(f"{manifest}: dropped {self.dropped} utterance(s) shorter than min_sample_size={min_sample_size}")
        if not keep:
            raise ValueError(f"{manifest}: no utterance has at least min_sample_size={min_sample_size} samples")
        self.indices = keep

    def __len__(self) -> int:
        return len(self.indices)

    def size(self, i: int) -> int:
        """Samples item ``i`` contributes to a batch (after the ``max_sample_size`` crop)."""
        n = self.manifest.entries[self.indices[i]].num_samples
        return min(n, self.max_sample_size) if self.max_sample_size else n

    def __getitem__(self, key: tuple[int, int]) -> tuple[int, Tensor]:
        """``key = (step, item)`` as :class:`MaxTokensBatchSampler` yields it; returns
        ``(step, waveform)`` so that collation can crop as a function of the step."""
        step, i = key
        return step, load_waveform(self.manifest.audio_path(self.indices[i]))


class MaxTokensBatchSampler(StepBatchSampler):
    """Batches of at most ``max_tokens`` samples (batch size × longest item), indexed by step.

    Items are bucketed by length (sorted, ties broken at random per pass) and cut greedily
    into batches; the cut points depend only on the sorted lengths, so every pass has the
    same number of batches, in a new order when ``shuffle``. As the harness's
    :class:`StepBatchSampler` (whose resume and sharding hooks it keeps), step ``k`` always gets
    the same batch: a resumed run continues the data order exactly, and with ``world``
    processes each step consumes ``world`` batches, one per rank. Without ``max_steps`` an
    iteration is one pass (validation, epoch-based training).
    """

    def __init__(self, sizes: Sequence[int], max_tokens: int, *, shuffle: bool, seed: int = 0,
                 max_steps: int | None = None):
        if max(sizes) > max_tokens:
            raise ValueError(f"max_tokens={max_tokens} is smaller than one utterance ({max(sizes)} samples); "
                             f"raise data.max_tokens or lower data.max_sample_size")
        self.sizes = list(sizes)
        self.max_tokens = max_tokens
        self.seed = seed
        self.num_batches = len(self._pass(0, shuffle=False))
        self._cached: tuple[int, list[list[int]]] = (-1, [])
        super().__init__(self.num_batches, 1, seed=seed, shuffle=shuffle, max_steps=max_steps)

    def set_distributed(self, world_size: int, rank: int) -> None:
        if self.num_batches < world_size:
            raise ValueError(f"{self.num_batches} batches cannot feed {world_size} processes")
        self.world_size, self.rank = world_size, rank
        self.steps_per_pass = self.num_batches // world_size

    def _pass(self, pass_idx: int, shuffle: bool) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + pass_idx)
        order = torch.randperm(len(self.sizes), generator=g).tolist() if shuffle else list(range(len(self.sizes)))
        order.sort(key=lambda i: self.sizes[i])  # stable: equal lengths keep the random order
        batches: list[list[int]] = [[]]
        longest = 0
        for i in order:
            if batches[-1] and max(longest, self.sizes[i]) * (len(batches[-1]) + 1) > self.max_tokens:
                batches.append([])
                longest = 0
            batches[-1].append(i)
            longest = max(longest, self.sizes[i])
        if shuffle:
            batches = [batches[j] for j in torch.randperm(len(batches), generator=g).tolist()]
        return batches

    def global_batch(self, step: int) -> list[int]:
        """This rank's batch at ``step``."""
        pass_idx, within = divmod(step, self.steps_per_pass)
        if self._cached[0] != pass_idx:  # one sort per pass, not per step
            self._cached = (pass_idx, self._pass(pass_idx, self.shuffle))
        return self._cached[1][within * self.world_size + self.rank]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        """Batches of ``(step, item)`` keys. A generator function, as the base class's: Lightning
        creates the iterator before the harness sets ``start_step`` on resume, so ``start_step``
        must be read at the first ``next``, not at ``iter``."""
        end = self.max_steps if self.max_steps is not None else self.start_step + self.steps_per_pass
        for step in range(self.start_step, end):
            yield [(step, i) for i in self.global_batch(step)]


def crop_collate(waves: Sequence[Tensor], max_sample_size: int | None, generator: torch.Generator | None,
                 normalize: bool) -> Tensor:
    """Stack waveforms cropped to the shortest one (and to ``max_sample_size``): offsets drawn
    from ``generator``, or centred without one. ``normalize`` standardises each waveform
    (fairseq's ``normalize=True``: zero mean, unit variance)."""
    target = min(w.numel() for w in waves)
    if max_sample_size:
        target = min(target, max_sample_size)
    out = []
    for w in waves:
        extra = w.numel() - target
        start = int(torch.randint(0, extra + 1, (), generator=generator)) if generator is not None else extra // 2
        w = w[start : start + target]
        if normalize:
            w = F.layer_norm(w, w.shape)
        out.append(w)
    return torch.stack(out)


class _Collate:
    """Picklable collate function (DataLoader workers). Training crops of step ``k`` come from
    a generator seeded with ``(seed, k)``: independent of workers and the global RNG, so a
    resumed run crops exactly as an uninterrupted one."""

    def __init__(self, max_sample_size: int | None, train: bool, normalize: bool, seed: int):
        self.max_sample_size, self.train, self.normalize, self.seed = max_sample_size, train, normalize, seed

    def __call__(self, items: Sequence[tuple[int, Tensor]]) -> Tensor:
        step = items[0][0]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step) if self.train else None
        return crop_collate([w for _, w in items], self.max_sample_size, g, self.normalize)


def make_loader(
    manifest: Path, *, max_tokens: int, min_sample_size: int, max_sample_size: int | None, normalize: bool,
    train: bool, seed: int, num_workers: int = 0, max_steps: int | None = None,
) -> DataLoader:
    """A DataLoader of ``(batch, samples)`` float32 waveform batches."""
    ds = AudioDataset(manifest, min_sample_size, max_sample_size)
    sampler = MaxTokensBatchSampler([ds.size(i) for i in range(len(ds))], max_tokens, shuffle=train, seed=seed,
                                    max_steps=max_steps)
    return DataLoader(ds, batch_sampler=sampler, collate_fn=_Collate(max_sample_size, train, normalize, seed),
                      num_workers=num_workers, persistent_workers=num_workers > 0)
