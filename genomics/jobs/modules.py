"""Lightning modules and small helpers shared by the genomics jobs."""
from __future__ import annotations

from collections import Counter
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from bio_speech_dyt.config import OptimConfig
from bio_speech_dyt.train import BaseModule

IGNORE_INDEX = -100


def norm_summary(model: nn.Module) -> str:
    """One line naming every norm class in ``model`` and how many of each (the swap check)."""
    counts = Counter(
        type(m).__name__ for m in model.modules()
        if isinstance(m, (nn.LayerNorm, nn.RMSNorm)) or type(m).__name__ == "DyT"
    )
    params = sum(p.numel() for p in model.parameters())
    return f"{type(model).__name__}: {params:,} parameters; norms: " + ", ".join(f"{n}×{k}" for k, n in sorted(counts.items()))


class _EpochSeeded(BaseModule):
    """Tells a training dataset with ``set_epoch`` (augmentation / masking seeds) the epoch."""

    def on_train_epoch_start(self) -> None:
        dataset = getattr(self.trainer.train_dataloader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(self.current_epoch)


class TokenLMModule(_EpochSeeded):
    """Cross-entropy over the positions of ``batch[target_key]`` that are not -100
    (next token for HyenaDNA: ``targets``; masked tokens for Caduceus: ``labels``)."""

    throughput_key = "tokens_per_s"

    def __init__(self, model: nn.Module, optim: OptimConfig, total_steps: int, target_key: str,
                 nonfinite_loss: str = "stop", config: dict | None = None):
        super().__init__(model, optim, total_steps, nonfinite_loss, config)
        self.target_key = target_key

    def compute_loss(self, batch: dict[str, Tensor], stage: str) -> tuple[Tensor, dict[str, Any], int]:
        ids, targets = batch["input_ids"], batch[self.target_key]
        logits = self.model(ids).float()
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
        scored = targets != IGNORE_INDEX
        accuracy = (logits.argmax(-1)[scored] == targets[scored]).float().mean()
        return loss, {"accuracy": accuracy.detach()}, ids.numel()


class ClassifierModule(_EpochSeeded):
    """Sequence classification (GenomicBenchmarks): cross-entropy, accuracy, a test step."""

    throughput_key = "samples_per_s"

    def compute_loss(self, batch: dict[str, Tensor], stage: str) -> tuple[Tensor, dict[str, Any], int]:
        logits = self.model(batch["input_ids"]).float()
        loss = F.cross_entropy(logits, batch["label"])
        accuracy = (logits.argmax(-1) == batch["label"]).float().mean()
        return loss, {"accuracy": accuracy.detach()}, batch["input_ids"].shape[0]

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss, parts, n = self.compute_loss(batch, "test")
        self.log_dict({"test_loss": loss, "test_accuracy": parts["accuracy"]}, on_epoch=True, batch_size=n, sync_dist=True)
