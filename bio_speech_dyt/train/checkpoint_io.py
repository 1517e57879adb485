"""Checkpoint writes that are never half-written: save to a temp file, then rename."""
from __future__ import annotations

from pathlib import Path

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from bio_speech_dyt.io import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """A failed write (disk full, killed) leaves the previous checkpoint and no temp file."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        with atomic_path(Path(path)) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, path, map_location=None, weights_only=True):
        # every checkpoint Lightning reads back (resume, test on best weights) is unpickled safely
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)
