"""The run harness through ``bsd``: a task registered by a test-only entry point, run-directory
states (finished, changed, locked, unwritable, full disk), config validation before anything is
written, unreadable checkpoints, loggers."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from bio_speech_dyt.cli import main
from bio_speech_dyt.locks import exclusive_lock

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def toy_env(tmp_path_factory):
    """Environment whose sys.path holds a dist-info declaring the toy domain's entry point."""
    site = tmp_path_factory.mktemp("site")
    info = site / "bsd_toy_domain-0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bsd-toy-domain\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text("[bio_speech_dyt.tasks]\ntoy = tests.support.toy_domain:DOMAIN\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]), OMP_NUM_THREADS="1")
    return env


@pytest.fixture()
def toy_in_process(monkeypatch):
    """The toy domain registered in this process (as its entry point would)."""
    from tests.support import toy_domain

    from bio_speech_dyt import cli, tasks

    installed = (*tasks.domains(), toy_domain.DOMAIN)
    monkeypatch.setattr(tasks, "domains", lambda: installed)
    monkeypatch.setattr(cli, "domains", lambda: installed)


@pytest.fixture()
def toy_yaml(tmp_path) -> Path:
    p = tmp_path / "toy.yaml"
    p.write_text(yaml.safe_dump({"task": "toy_regression", "trainer": {
        "max_steps": 4, "checkpoint_every_n_steps": 2, "progress_bar": False, "log_every_n_steps": 1,
        "accelerator": "cpu"}}))
    return p


def bsd(env, *args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bio_speech_dyt", *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 2, no traceback, one error line naming every needle."""
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1, proc.stderr
    for n in needles:
        assert n in errors[0], errors[0]
    return errors[0]


def test_task_from_a_test_only_entry_point_runs_through_bsd_pretrain(toy_env, toy_yaml, tmp_path):
    run = tmp_path / "run"
    proc = bsd(toy_env, "pretrain", toy_yaml, "--out", run, "--set", "trainer.loggers=[csv,tensorboard]")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["task"] == "toy_regression" and metrics["domain"] == "toy"
    assert yaml.safe_load((run / "config.yaml").read_text())["task"] == "toy_regression"
    rows = (run / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4"]  # one row per optimizer step
    assert list((run / "tensorboard").glob("events.out.tfevents.*")), "TensorBoard event file missing"
    assert (run / "alpha.csv").is_file()


def test_finished_run_resumed_is_a_no_op_and_changed_config_is_refused(toy_env, toy_yaml, tmp_path):
    run = tmp_path / "run"
    assert bsd(toy_env, "pretrain", toy_yaml, "--out", run).returncode == 0
    before = {p.name: p.read_bytes() for p in (run / "metrics.json", run / "config.yaml", run / "metrics.csv")}
    again = bsd(toy_env, "pretrain", toy_yaml, "--out", run, "--resume")
    assert again.returncode == 0 and "finished" in again.stdout
    one_line_error(bsd(toy_env, "pretrain", toy_yaml, "--out", run), str(run), "--resume")
    changed = bsd(toy_env, "pretrain", toy_yaml, "--out", run, "--resume", "--set", "batch_size=4")
    one_line_error(changed, "batch_size: 8 -> 4", "trainer.max_steps")
    assert {p.name: p.read_bytes() for p in (run / "metrics.json", run / "config.yaml", run / "metrics.csv")} == before
    longer = bsd(toy_env, "pretrain", toy_yaml, "--out", run, "--resume", "--set", "trainer.max_steps=6")
    assert longer.returncode == 0, longer.stderr[-2000:]
    assert json.loads((run / "metrics.json").read_text())["steps"] == 6


@pytest.mark.parametrize("setting, needle", [
    ("trainer.max_steps=0", "max_steps"), ("batch_size=0", "batch_size"), ("optim.lr=-1", "optim.lr"), ("optim.eps=0", "optim.eps"),
    ("optim.lr=nan", "optim.lr"), ("trainer.devices=0", "trainer.devices"), ("trainer.strategy=dpp", "trainer.strategy"),
    ("trainer.precision=bf17", "trainer.precision"), ("optim.scheduler=cos", "optim.scheduler"),
])
def test_bad_values_fail_before_the_run_directory_exists(toy_in_process, toy_yaml, tmp_path, capsys, setting, needle):
    run = tmp_path / "run"
    assert main(["pretrain", str(toy_yaml), "--out", str(run), "--set", setting]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err, err
    assert not run.exists()


def test_model_norm_typo_fails_before_the_run_directory_exists(tmp_path):
    run = tmp_path / "run"
    proc = bsd(dict(os.environ), "pretrain", ROOT / "configs/genomics/cpu/hyenadna_tiny_pretrain_dyt.yaml",
               "--set", "model.norm=dyt2", "--out", run)
    one_line_error(proc, "model.norm", "dyt2")
    assert not run.exists()


def test_gpu_accelerator_without_a_gpu_is_a_config_error(toy_env, toy_yaml, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    one_line_error(bsd(toy_env, "pretrain", toy_yaml, "--out", tmp_path / "r", "--set", "trainer.accelerator=gpu"),
                   "trainer.accelerator")


def test_nonfinite_loss_at_the_first_step_says_no_checkpoint_exists(toy_env, toy_yaml, tmp_path):
    line = one_line_error(bsd(toy_env, "pretrain", toy_yaml, "--out", tmp_path / "r", "--set", "nan_at_step=0"),
                          "non-finite")
    assert "no checkpoint was written yet" in line


def test_out_under_a_file_or_in_a_read_only_folder(toy_env, toy_yaml, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_error(bsd(toy_env, "pretrain", toy_yaml, "--out", blocker / "run"), str(blocker))
    if os.geteuid() == 0:
        pytest.skip("root ignores folder permissions")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        one_line_error(bsd(toy_env, "pretrain", toy_yaml, "--out", ro / "run"), str(ro / "run"), "permission")
    finally:
        ro.chmod(0o700)


def test_locked_run_directory_is_refused_at_once(toy_env, toy_yaml, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with exclusive_lock(run, "run directory"):
        one_line_error(bsd(toy_env, "pretrain", toy_yaml, "--out", run), str(run), "in use")
    assert not (run / "config.yaml").exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_unreadable_checkpoint_is_named_by_resume_evaluate_and_report(toy_env, toy_yaml, tmp_path, damage):
    run = tmp_path / "run"
    assert bsd(toy_env, "pretrain", toy_yaml, "--out", run, "--set", "trainer.max_steps=2").returncode == 0
    ckpt = run / "checkpoints" / "last.ckpt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a checkpoint" * 100)
    config_before = (run / "config.yaml").read_bytes()
    one_line_error(bsd(toy_env, "pretrain", toy_yaml, "--out", run, "--resume", "--set", "trainer.max_steps=4"), str(ckpt))
    assert (run / "config.yaml").read_bytes() == config_before
    one_line_error(bsd(toy_env, "report", run, "--out", tmp_path / "rep", "--analyze", ckpt), str(ckpt))
    one_line_error(bsd(toy_env, "evaluate", "speech", "--checkpoint", ckpt, "--manifest", tmp_path / "valid.tsv"),
                   "valid.tsv")


def test_disk_full_while_checkpointing_keeps_the_last_good_state(monkeypatch, tmp_path):
    from bio_speech_dyt.train import checkpoint_io
    from bio_speech_dyt.train.checkpoint_io import AtomicCheckpointIO
    from tests.support.toy_task import ToyModule, toy_config, toy_loaders

    from bio_speech_dyt.train import run_training

    cfg = toy_config(max_steps=4, checkpoint_every_n_steps=2)
    run_training(cfg, ToyModule(cfg), *toy_loaders(), tmp_path)
    last = tmp_path / "checkpoints" / "last.ckpt"
    good = last.read_bytes()

    def full(obj, f, *a, **k):
        Path(f).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(f))

    monkeypatch.setattr(checkpoint_io.torch, "save", full)
    with pytest.raises(OSError):
        AtomicCheckpointIO().save_checkpoint({"x": 1}, last)
    assert last.read_bytes() == good
    assert not [p for p in last.parent.iterdir() if p.name.endswith(".tmp")]
    from bio_speech_dyt.cli import describe_os_error

    assert "no space left" in describe_os_error(OSError(errno.ENOSPC, "x", str(last)))


def test_core_imports_no_domain_module():
    code = ("import importlib, pkgutil, sys, bio_speech_dyt\n"
            "for m in pkgutil.walk_packages(bio_speech_dyt.__path__, 'bio_speech_dyt.'):\n"
            "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('genomics', 'speech')]\n"
            "assert not bad, bad\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("writes_result", [False, True])
def test_failed_new_run_is_undone_unless_it_wrote_a_result(tmp_path, writes_result):
    """A fresh run that fails before any checkpoint or result leaves no folder; one that finished
    a part (an evaluation seed's result.json) keeps it for --resume."""
    from bio_speech_dyt.harness import RunContext
    from bio_speech_dyt.tasks import Task
    from tests.support.toy_task import ToyConfig

    def run(cfg, run_dir):
        if writes_result:
            (run_dir.path / "task" / "seed1").mkdir(parents=True)
            (run_dir.path / "task" / "seed1" / "result.json").write_text("{}")
        raise RuntimeError("seed 2 failed")

    task = Task("toy_regression", "toy", "evaluate", ToyConfig, run, loss_unit="mse")
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with RunContext(task, ToyConfig(), out, resume=False) as started:
            task.run(ToyConfig(), started)
    assert out.exists() == writes_result
    if writes_result:
        assert (out / "config.yaml").is_file() and (out / "task" / "seed1" / "result.json").is_file()
