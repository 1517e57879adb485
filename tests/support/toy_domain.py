"""A third-party domain as a test registers one: the toy regression task behind the entry point
``bio_speech_dyt.tasks: toy`` (tests/core/test_runs.py writes the package metadata)."""
from __future__ import annotations

import torch

from bio_speech_dyt.tasks import Domain, Task
from bio_speech_dyt.train import StepBatchSampler, run_training
from tests.support.toy_task import ToyConfig, ToyModule, toy_data


def run(cfg: ToyConfig, run) -> dict:
    data = toy_data()
    sampler = StepBatchSampler(len(data), cfg.batch_size, seed=cfg.seed, max_steps=cfg.trainer.max_steps)
    loader = torch.utils.data.DataLoader(data, batch_sampler=sampler)
    return run_training(cfg, ToyModule(cfg), loader, None, run.path, run.resume)


DOMAIN = Domain(name="toy", tasks=[Task("toy_regression", "toy", "pretrain", ToyConfig, run, loss_unit="mse")])
