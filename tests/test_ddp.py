"""2-process DDP on CPU (gloo) equals the 1-process run with the same global batch."""
import subprocess
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).parent / "ddp_toy.py"


def _run(devices: int, out: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--devices", str(devices), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return torch.load(out / "params.pt", weights_only=True)


def test_ddp_two_processes_equal_one(tmp_path):
    one = _run(1, tmp_path / "one")
    two = _run(2, tmp_path / "two")
    assert one.keys() == two.keys()
    start = torch.load(tmp_path / "one" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert start == 5
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=0, atol=1e-6, msg=f"parameter {k} differs")
