"""The shared Lightning harness on a toy task: run directory, resume, groups, schedules, NaN guard."""
import csv
import json

import pytest
import torch
from torch import nn

from bio_speech_dyt import DyT
from bio_speech_dyt.config import OptimConfig
from bio_speech_dyt.train import NonFiniteLossError, lr_lambda, no_decay_names, run_training
from toy_task import ToyModule, toy_config, toy_loaders


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_run_directory_and_resume(tmp_path):
    cfg = toy_config(max_steps=4, val_check_interval=2)
    module = ToyModule(cfg)
    train, val = toy_loaders()
    metrics = run_training(cfg, module, train, val, tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert saved["steps"] == 4 and saved["num_parameters"] == 8 * 16 + 16 + 1 + 32 + 16 + 1
    assert saved["train_loss"] > 0 and saved["valid_loss"] > 0 and saved["samples_per_s"] > 0
    rows = _rows(tmp_path / "metrics.csv")
    assert [int(r["step"]) for r in rows if r["train_loss"]] == [1, 2, 3, 4]
    assert any(r.get("valid_loss") for r in rows)
    alphas = _rows(tmp_path / "alpha.csv")
    assert [int(r["step"]) for r in alphas] == [1, 2, 3, 4] and "1" in alphas[0]
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert "last.ckpt" in ckpts and "step0000002.ckpt" in ckpts
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4 and ckpt["hyper_parameters"]["config"]["trainer"]["max_steps"] == 4

    cfg6 = toy_config(max_steps=6, val_check_interval=2)
    resumed = run_training(cfg6, ToyModule(cfg6), *toy_loaders(), tmp_path, resume=True)
    assert resumed["steps"] == 6
    steps = [int(r["step"]) for r in _rows(tmp_path / "metrics.csv") if r["train_loss"]]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_no_weight_decay_groups():
    class WithFilter(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 4)
            self.filt = nn.Parameter(torch.randn(4))

        def no_weight_decay(self):
            return {"filt"}

    model = nn.Sequential(nn.Linear(4, 4), DyT(4), nn.LayerNorm(4), WithFilter())
    names = no_decay_names(model)
    assert names == {"0.bias", "1.alpha", "1.weight", "1.bias", "2.weight", "2.bias", "3.proj.bias", "3.filt"}


def test_schedules():
    cos = lr_lambda(OptimConfig(scheduler="cosine", warmup_steps=10, min_lr_ratio=0.1), 110)
    assert cos(0) == pytest.approx(0.1) and cos(9) == pytest.approx(1.0)
    assert cos(60) == pytest.approx(0.55) and cos(110) == pytest.approx(0.1)
    poly = lr_lambda(OptimConfig(scheduler="polynomial", warmup_steps=0, power=1.0), 100)
    assert poly(50) == pytest.approx(0.5) and poly(100) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="unknown scheduler"):
        lr_lambda(OptimConfig(scheduler="step"), 10)


def test_nonfinite_loss_stops_with_step_and_keeps_checkpoint(tmp_path):
    cfg = toy_config(max_steps=6, checkpoint_every_n_steps=1)
    cfg.nan_at_step = 3
    with pytest.raises(NonFiniteLossError, match="at step 3"):
        run_training(cfg, ToyModule(cfg), *toy_loaders(), tmp_path)
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values())


def test_nonfinite_loss_skip_policy(tmp_path):
    cfg = toy_config(max_steps=5, nonfinite_loss="skip")
    cfg.nan_at_step = 2
    metrics = run_training(cfg, ToyModule(cfg), *toy_loaders(), tmp_path)
    assert metrics["skipped_steps"] == 1 and metrics["steps"] == 5
