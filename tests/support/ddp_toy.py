"""Run the toy task on N CPU processes (gloo DDP through Lightning) and save the final
parameters; tests/core/test_ddp.py compares the 1- and 2-process runs.

Lightning's DDP launcher re-executes this script for the other ranks, as torchrun would.
"""
import argparse
import os
import sys
from pathlib import Path

import torch

from tests.support.toy_task import ToyModule, toy_config, toy_data

from bio_speech_dyt.train import run_training


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--devices", type=int, required=True)
    p.add_argument("--global-batch", type=int, default=8)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    torch.use_deterministic_algorithms(True)
    cfg = toy_config(devices=a.devices, strategy="ddp" if a.devices > 1 else "auto", max_steps=5)
    module = ToyModule(cfg)
    per_device = a.global_batch // a.devices
    # An explicit unshuffled DistributedSampler (Lightning would inject a shuffling one): rank r
    # sees rows r, r+N, ...; the union of the ranks' batches is the 1-process batch.
    # Lightning's launcher sets LOCAL_RANK for the re-executed ranks; the main process is rank 0.
    rank = int(os.environ.get("LOCAL_RANK", 0))
    data = toy_data()
    sampler = torch.utils.data.DistributedSampler(data, num_replicas=a.devices, rank=rank, shuffle=False)
    train = torch.utils.data.DataLoader(data, batch_size=per_device, sampler=sampler)
    run_training(cfg, module, train, None, a.out)
    if module.global_rank == 0:
        torch.save({k: v.detach().clone() for k, v in module.model.state_dict().items()}, a.out / "params.pt")


if __name__ == "__main__":
    main()
