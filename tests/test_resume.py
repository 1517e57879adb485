"""Exact resume after SIGKILL: per-step losses and final parameters equal an uninterrupted run."""
import sys
from pathlib import Path

import torch

from resume_helpers import kill_after_first_checkpoint, run, train_rows

SCRIPT = str(Path(__file__).parent / "resume_toy.py")


def test_toy_sigkill_resume_is_exact(tmp_path):
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    run([sys.executable, SCRIPT, "--out", str(straight)])
    kill_after_first_checkpoint([sys.executable, SCRIPT, "--out", str(crashed)], crashed)
    assert not (crashed / "metrics.json").exists()  # it really died mid-run
    run([sys.executable, SCRIPT, "--out", str(crashed), "--resume"])
    assert train_rows(crashed) == train_rows(straight) and len(train_rows(straight)) == 8
    a = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(crashed / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_hyenadna_pretraining_sigkill_resume_is_exact(tmp_path):
    from genomics.data.synthetic import prepare_synthetic_genomics

    prepare_synthetic_genomics(tmp_path / "data", seed=0)
    cmd = [sys.executable, "-m", "bio_speech_dyt", "pretrain", "configs/genomics/cpu/hyenadna_tiny_pretrain_layernorm.yaml",
           "--set", f"data.path={tmp_path / 'data' / 'genome'}", "--set", "data.max_length=128", "--set", "model.l_max=130",
           "--set", "trainer.max_steps=40", "--set", "trainer.checkpoint_every_n_steps=5",
           "--set", "trainer.val_check_interval=1000", "--set", "trainer.progress_bar=false",
           "--set", "trainer.log_every_n_steps=1", "--set", "data.rc_prob=0.5"]
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    run(cmd + ["--out", str(straight)])
    kill_after_first_checkpoint(cmd + ["--out", str(crashed)], crashed)
    assert not (crashed / "metrics.json").exists()
    run(cmd + ["--out", str(crashed), "--resume"])
    assert train_rows(crashed) == train_rows(straight) and len(train_rows(straight)) == 40
    a = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(crashed / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
