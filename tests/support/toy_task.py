"""A tiny regression task on the shared harness, used by the harness and DDP tests."""
from __future__ import annotations

import dataclasses
from typing import Annotated

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bio_speech_dyt import DyT
from bio_speech_dyt.config import AtLeastOne, JobConfig, OptimConfig, TrainerConfig
from bio_speech_dyt.train import BaseModule


@dataclasses.dataclass
class ToyConfig(JobConfig):
    task: str = "toy_regression"
    batch_size: Annotated[int, AtLeastOne] = 8
    nan_at_step: int = -1
    dropout: float = 0.0


class ToyModule(BaseModule):
    throughput_key = "samples_per_s"

    def __init__(self, cfg: ToyConfig):
        torch.manual_seed(cfg.seed)
        model = nn.Sequential(nn.Linear(8, 16), DyT(16), nn.Dropout(cfg.dropout), nn.Linear(16, 1))
        super().__init__(model, cfg.optim, cfg.trainer.max_steps, cfg.trainer.nonfinite_loss, dataclasses.asdict(cfg))
        self.nan_at_step = cfg.nan_at_step

    def compute_loss(self, batch, stage):
        x, y = batch
        pred = self.model(x).squeeze(-1)
        loss = nn.functional.mse_loss(pred, y)
        if stage == "train" and self.trainer.global_step == self.nan_at_step:
            loss = loss * float("nan")
        return loss, {"mae": (pred - y).abs().mean().detach()}, x.shape[0]


def toy_data(n: int = 64, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = torch.tanh(x @ torch.randn(8, generator=g)) + 0.05 * torch.randn(n, generator=g)
    return TensorDataset(x, y)


def toy_config(**trainer) -> ToyConfig:
    base = dict(max_steps=6, checkpoint_every_n_steps=2, log_every_n_steps=1, accelerator="cpu",
                progress_bar=False, val_check_interval=None)
    base.update(trainer)
    return ToyConfig(optim=OptimConfig(lr=1e-2, warmup_steps=2), trainer=TrainerConfig(**base))


def toy_loaders(batch_size: int = 8):
    return (DataLoader(toy_data(), batch_size=batch_size, shuffle=False),
            DataLoader(toy_data(16, seed=1), batch_size=batch_size))
