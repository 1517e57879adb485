"""Training runs as subprocesses (``bsd pretrain``): run, crash with SIGKILL after the first
periodic checkpoint, resume; read back their metrics and parameters."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch


ROOT = Path(__file__).resolve().parents[2]
#: every pretraining run of the tests: a checkpoint every 5 steps, a training row every step, no validation
RUN_SETS = ["trainer.checkpoint_every_n_steps=5", "trainer.val_check_interval=1000", "trainer.progress_bar=false",
            "trainer.log_every_n_steps=1"]


def pretrain_cmd(config: str, *sets: str) -> list[str]:
    """``bsd pretrain CONFIG --set ...`` (RUN_SETS, then ``sets``), without ``--out``; ``config``
    is relative to the repository root."""
    cmd = [sys.executable, "-m", "bio_speech_dyt", "pretrain", str(ROOT / config)]
    for s in [*RUN_SETS, *sets]:
        cmd += ["--set", s]
    return cmd


def synthetic_genome(root: Path) -> str:
    """Prepare the synthetic genome under ``root/data``; returns its ``data.path=`` override."""
    from genomics.data.synthetic import prepare_synthetic_genomics

    prepare_synthetic_genomics(root / "data", seed=0)
    return f"data.path={root / 'data' / 'genome'}"


def hyenadna_cmd(root: Path, *sets: str) -> list[str]:
    """HyenaDNA-tiny pretraining on the synthetic genome (prepared under ``root``), shrunk to
    seconds a run: 128-bp windows, reverse-complement augmentation."""
    return pretrain_cmd("configs/genomics/cpu/hyenadna_tiny_pretrain_layernorm.yaml", synthetic_genome(root),
                        "data.max_length=128", "model.l_max=130", "data.rc_prob=0.5", *sets)


def train_rows(run_dir: Path) -> list[tuple[str, str]]:
    """(step, train_loss) of every training row of metrics.csv."""
    with open(run_dir / "metrics.csv", newline="") as f:
        return [(r["step"], r["train_loss"]) for r in csv.DictReader(f) if r.get("train_loss")]


def run(cmd: list[str], timeout: float = 600) -> str:
    """Run ``cmd`` to completion; returns its stdout + stderr."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def kill_after_first_checkpoint(cmd: list[str], run_dir: Path, timeout: float = 600) -> int:
    """Start ``cmd``; SIGKILL it as soon as a periodic ``step*.ckpt`` and ``last.ckpt`` (written
    after it; what ``--resume`` reads) exist. Returns the number of periodic checkpoints present at the kill."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, cwd=ROOT)
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
