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
