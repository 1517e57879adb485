"""The toy task as a process that can be killed and resumed (tests/core/test_resume.py)."""
import argparse
import sys
import time
from pathlib import Path

import lightning as L
import torch

from tests.support.toy_task import ToyModule, toy_config, toy_data

from bio_speech_dyt.train import StepBatchSampler, run_training


class Slow(L.Callback):
    """Leaves time to kill the process between steps."""

    def on_train_batch_end(self, *args):
        time.sleep(0.3)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--resume", action="store_true")
    a = p.parse_args()
    torch.use_deterministic_algorithms(True)
    cfg = toy_config(max_steps=8, checkpoint_every_n_steps=3, deterministic=True)
    cfg.dropout = 0.3
    module = ToyModule(cfg)
    data = toy_data()
    loader = torch.utils.data.DataLoader(data, batch_sampler=StepBatchSampler(len(data), 8, seed=5, max_steps=8))
    run_training(cfg, module, loader, None, a.out, resume=a.resume, callbacks=[Slow()])


if __name__ == "__main__":
    main()
