"""The shared Lightning harness on a toy task: run directory, resume, groups, schedules, NaN guard."""
import csv
import json

import lightning as L
import pytest
import torch
from torch import nn

from bio_speech_dyt import DyT
from bio_speech_dyt.config import OptimConfig
from bio_speech_dyt.train import NonFiniteLossError, PassIndexed, StepBatchSampler, lr_lambda, no_decay_names, run_training
from tests.support.toy_task import ToyModule, toy_config, toy_loaders


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
    from safetensors.torch import load_file

    exported = load_file(tmp_path / "model.safetensors")
    assert all(torch.equal(exported[k], v) for k, v in module.model.state_dict().items())
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


def _step_loader(cfg):
    data = toy_loaders()[0].dataset
    return torch.utils.data.DataLoader(data, batch_sampler=StepBatchSampler(len(data), 8, seed=3, max_steps=cfg.trainer.max_steps))


def test_exact_resume_with_step_sampler_and_rng(tmp_path):
    """6 steps straight == 3 steps, then resume to 6: same per-step losses, bitwise."""
    def cfg_for(steps):
        cfg = toy_config(max_steps=steps, checkpoint_every_n_steps=3, deterministic=True)
        cfg.dropout = 0.3  # consumes the torch RNG every step
        return cfg

    class StopAt3(L.Callback):  # an interruption right after the step-3 checkpoint
        def on_train_batch_end(self, trainer, *args):
            trainer.should_stop = trainer.global_step == 3

    straight = tmp_path / "straight"
    m1 = ToyModule(cfg_for(6))
    run_training(cfg_for(6), m1, _step_loader(cfg_for(6)), None, straight)
    split = tmp_path / "split"
    run_training(cfg_for(6), ToyModule(cfg_for(6)), _step_loader(cfg_for(6)), None, split, callbacks=[StopAt3()])
    assert len(_rows(split / "metrics.csv")) == 3
    m2 = ToyModule(cfg_for(6))
    run_training(cfg_for(6), m2, _step_loader(cfg_for(6)), None, split, resume=True)
    a = [r["train_loss"] for r in _rows(straight / "metrics.csv")]
    b = [r["train_loss"] for r in _rows(split / "metrics.csv")]
    assert a == b and len(a) == 6
    for (k, p1), p2 in zip(m1.model.state_dict().items(), m2.model.state_dict().values()):
        assert torch.equal(p1, p2), k


def test_step_sampler_shards_global_batch():
    s = StepBatchSampler(20, 4, seed=1, max_steps=12)
    one = list(s)
    assert len(one) == 12 and all(len(b) == 4 for b in one)
    assert sorted(sum(one[:5], [])) == list(range(20))  # a pass covers the data once
    ranks = []
    for r in range(2):
        s2 = StepBatchSampler(20, 4, seed=1, max_steps=12, world_size=2, rank=r)
        ranks.append(list(s2))
    assert all(sorted(a + b) == sorted(c) for a, b, c in zip(ranks[0], ranks[1], one))
    it = iter(s)  # Lightning creates the iterator before the harness sets start_step on resume
    s.start_step = 7
    assert list(it) == one[7:]
    with pytest.raises(ValueError, match="fewer than one global batch"):
        StepBatchSampler(3, 4)


def test_pass_offsets_tell_the_dataset_its_pass():
    class EpochEcho(torch.utils.data.Dataset):
        epoch = 0

        def __len__(self):
            return 6

        def __getitem__(self, i):
            return (self.epoch, i)

    s = StepBatchSampler(6, 3, seed=0, max_steps=4, pass_offsets=True)
    ds = PassIndexed(EpochEcho())
    seen = [[ds[j] for j in batch] for batch in s]
    assert [{e for e, _ in b} for b in seen] == [{0}, {0}, {1}, {1}]
    assert sorted(i for b in seen[2:] for _, i in b) == list(range(6))
