"""Crash a training process with SIGKILL after its first periodic checkpoint, then resume."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import time
from pathlib import Path

import torch


def train_rows(run_dir: Path) -> list[tuple[str, str]]:
    """(step, train_loss) of every training row of metrics.csv."""
    with open(run_dir / "metrics.csv", newline="") as f:
        return [(r["step"], r["train_loss"]) for r in csv.DictReader(f) if r.get("train_loss")]


def run(cmd: list[str], timeout: float = 600) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def kill_after_first_checkpoint(cmd: list[str], run_dir: Path, timeout: float = 600) -> int:
    """Start ``cmd``; SIGKILL it as soon as a periodic ``step*.ckpt`` and ``last.ckpt`` (written
    after it; what ``--resume`` reads) exist. Returns the number of periodic checkpoints present at the kill."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    ckpt_dir = run_dir / "checkpoints"
    try:
        while time.monotonic() < deadline:
            found = list(ckpt_dir.glob("step*.ckpt")) if ckpt_dir.is_dir() else []
            if found and (ckpt_dir / "last.ckpt").is_file():
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return len(found)
            if proc.poll() is not None:
                raise AssertionError(f"process ended (rc {proc.returncode}) before its first checkpoint")
            time.sleep(0.05)
        raise AssertionError("no checkpoint appeared in time")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def final_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def assert_sigkill_resume_exact(cmd: list[str], root: Path, steps: int) -> None:
    """Run ``cmd --out root/straight`` through; run ``cmd --out root/crashed``, SIGKILL it after
    its first periodic checkpoint and finish it with ``--resume``. Every training row of
    metrics.csv and every final parameter must be bitwise equal."""
    straight, crashed = root / "straight", root / "crashed"
    run(cmd + ["--out", str(straight)])
    kill_after_first_checkpoint(cmd + ["--out", str(crashed)], crashed)
    assert not (crashed / "metrics.json").exists()  # it really died mid-run
    run(cmd + ["--out", str(crashed), "--resume"])
    expected, got = train_rows(straight), train_rows(crashed)
    assert len(expected) == steps
    first = next(((e, g) for e, g in zip(expected, got) if e != g), None)
    assert got == expected, f"{len(got)} rows, {len(expected)} expected; first differing (step, loss): {first}"
    a, b = final_state(straight), final_state(crashed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
