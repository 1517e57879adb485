"""2-process DDP on CPU (gloo) equals the 1-process run with the same global batch."""
import sys
from pathlib import Path

import pytest
import torch
from tests.support.numerics import assert_close_scaled
from tests.support.resume_helpers import final_state, hyenadna_cmd, run, train_rows



def _run(devices: int, out: Path) -> dict:
    run([sys.executable, "-m", "tests.support.ddp_toy", "--devices", str(devices), "--out", str(out)], timeout=300)
    return torch.load(out / "params.pt", weights_only=True)


def test_ddp_two_processes_equal_one(tmp_path):
    one = _run(1, tmp_path / "one")
    two = _run(2, tmp_path / "two")
    assert one.keys() == two.keys()
    start = torch.load(tmp_path / "one" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert start == 5
    for k in one:
        assert_close_scaled(two[k], one[k], rtol=1e-5, msg=f"parameter {k} differs")


def test_hyenadna_pretraining_ddp_two_processes_equal_one(tmp_path):
    """``bsd pretrain`` with ``trainer.devices=2 trainer.strategy=ddp`` on CPU (gloo) against one
    process. The genomics jobs' ``data.batch_size`` is per device (the global batch is
    ``batch_size × devices``, cut from one step-indexed order), so 2 × 4 against 1 × 8."""
    cmd = hyenadna_cmd(tmp_path, "trainer.max_steps=10")
    run(cmd + ["--set", "data.batch_size=8", "--out", str(tmp_path / "one")])
    log = run(cmd + ["--set", "data.batch_size=4", "--set", "trainer.devices=2", "--set", "trainer.strategy=ddp",
                     "--out", str(tmp_path / "two")])
    assert "Starting with 2 processes" in log  # Lightning's line once both ranks have joined
    one, two = train_rows(tmp_path / "one"), train_rows(tmp_path / "two")
    assert [s for s, _ in one] == [s for s, _ in two] == [str(k) for k in range(1, 11)]
    for (step, a), (_, b) in zip(one, two):
        # the ranks sum their gradients in another order: equal to float32 rounding, relative to the loss
        assert float(b) == pytest.approx(float(a), rel=1e-5, abs=0), f"step {step}: loss {b} on 2 processes, {a} on 1"
    a, b = final_state(tmp_path / "one"), final_state(tmp_path / "two")
    for k in a:
        assert_close_scaled(b[k], a[k], rtol=1e-4, msg=f"parameter {k} differs")
