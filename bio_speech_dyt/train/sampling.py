"""A batch sampler indexed by optimizer step: exact resume and DDP equivalence by construction.

The global batch of step ``k`` is a slice of a seeded permutation of the dataset (a new
permutation each pass); with ``world_size`` processes, rank ``r`` takes rows ``r::world_size``
of it, so N processes see exactly the rows one process would. On resume the harness sets
``start_step`` to the restored global step and the sequence continues where it stopped.
Lightning's own DistributedSampler shuffles per epoch and restarts a resumed epoch from
its first batch, which gives neither property; hence this small sampler.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Dataset, Sampler


class StepBatchSampler(Sampler[list[int]]):
    def __init__(
        self,
        num_samples: int,
        global_batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        world_size: int = 1,
        rank: int = 0,
        max_steps: int | None = None,
        pass_offsets: bool = False,
        accumulate: int = 1,
    ) -> None:
        """``max_steps`` counts micro-batches (optimizer steps × ``accumulate``); with
        ``accumulate`` > 1 an optimizer step's ``accumulate × global_batch_size`` rows are cut
        from the order as one batch and handed out in consecutive slices, so accumulation gives
        exactly the samples of a batch ``accumulate`` times larger."""
        global_batch_size *= accumulate
        if num_samples < global_batch_size:
            raise ValueError(f"dataset has {num_samples} samples, fewer than one global batch ({global_batch_size})")
        if global_batch_size % world_size:
            raise ValueError(f"global batch {global_batch_size} is not divisible by {world_size} processes")
        self.num_samples = num_samples
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.world_size = world_size
        self.rank = rank
        self.max_steps = max_steps
        self.pass_offsets = pass_offsets
        self.accumulate = accumulate
        self.start_step = 0  # in micro-batches
        self.steps_per_pass = num_samples // global_batch_size  # the incomplete tail of a pass is dropped

    def set_distributed(self, world_size: int, rank: int) -> None:
        if self.global_batch_size % world_size:
            raise ValueError(f"global batch {self.global_batch_size} is not divisible by {world_size} processes")
        self.world_size, self.rank = world_size, rank

    def _order(self, pass_idx: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.num_samples)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + pass_idx)
        return torch.randperm(self.num_samples, generator=g)

    def global_batch(self, step: int) -> list[int]:
        """Dataset indices of step ``step``'s global batch; with ``pass_offsets`` they are
        offset by ``pass * num_samples`` so that :class:`PassIndexed` knows the pass."""
        pass_idx, within = divmod(step, self.steps_per_pass)
        order = self._order(pass_idx)
        batch = order[within * self.global_batch_size:(within + 1) * self.global_batch_size]
        if self.pass_offsets:
            batch = batch + pass_idx * self.num_samples
        return batch.tolist()

    def __iter__(self) -> Iterator[list[int]]:
        # a generator function: Lightning calls iter() before on_train_start, where the harness sets
        # start_step on resume; the body (and start_step) is read at the first next()
        micro = self.start_step
        size = self.global_batch_size // self.accumulate
        while self.max_steps is None or micro < self.max_steps:
            step, j = divmod(micro, self.accumulate)
            yield self.global_batch(step)[j * size:(j + 1) * size][self.rank::self.world_size]
            micro += 1

    def __len__(self) -> int:
        if self.max_steps is None:
            return self.steps_per_pass * self.accumulate
        return max(0, self.max_steps - self.start_step)


class PassIndexed(Dataset):
    """Wraps a dataset whose items depend on an ``epoch`` attribute (augmentation, masking):
    index ``pass * n + i`` gives item ``i`` of pass ``pass``. Works in DataLoader workers, where
    a ``set_epoch`` call on the main process's copy would not reach."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.n = len(dataset)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        pass_idx, i = divmod(index, self.n)
        self.dataset.epoch = pass_idx
        return self.dataset[i]
