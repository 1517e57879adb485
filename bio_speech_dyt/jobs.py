"""``bsd pretrain CONFIG``: find the job from the YAML's ``task`` key, build its typed
config, make the run directory and run it.

Each task module exposes ``CONFIGS = {task: ConfigDataclass}`` and
``run(cfg, run_dir: Path, resume: bool) -> dict`` (the metrics written to metrics.json).
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Sequence

import lightning as L
import yaml

from bio_speech_dyt.config import ConfigError, load_config, read_yaml, to_dict
from bio_speech_dyt.io import write_text

TASKS = {
    "hyenadna_pretrain": "genomics.jobs.pretrain",
    "caduceus_pretrain": "genomics.jobs.pretrain",
    "wav2vec2_pretrain": "speech.jobs.pretrain",
}


def resolve(config_path: str | Path, overrides: Sequence[str] = ()):
    """Return ``(task module, typed config)`` for a job YAML."""
    raw = read_yaml(config_path)
    task = raw.get("task")
    if task not in TASKS:
        raise ConfigError(f"{config_path}: 'task' must be one of {sorted(TASKS)}, got {task!r}")
    module = importlib.import_module(TASKS[task])
    cfg = load_config(module.CONFIGS[task], config_path, overrides)
    return module, cfg


def prepare_run_dir(run_dir: Path, cfg, resume: bool) -> None:
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if ckpt.exists() and not resume:
        raise FileExistsError(f"{run_dir} already holds a run ({ckpt}); pass --resume to continue it or a new --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))


def pretrain(config_path: str | Path, overrides: Sequence[str] = (), out: str | Path | None = None, resume: bool = False) -> dict:
    module, cfg = resolve(config_path, overrides)
    run_dir = Path(out) if out else Path("runs") / Path(config_path).stem
    prepare_run_dir(run_dir, cfg, resume)
    L.seed_everything(cfg.seed, workers=True, verbose=False)  # before the model is built: reproducible init
    metrics = module.run(cfg, run_dir, resume)
    print(f"run directory: {run_dir}")
    return metrics


def load_checkpoint_model(ckpt_path: str | Path):
    """Rebuild the model of any pretraining checkpoint for analysis.

    Reads ``hyper_parameters["config"]`` (with its ``task``) and calls the task module's
    ``analysis_inputs(cfg, ckpt_path) -> (model, run)`` where ``run()`` feeds the model one
    real batch (forward only). Returns ``(cfg, model, run)``.
    """
    import torch

    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    raw = ckpt.get("hyper_parameters", {}).get("config") or {}
    task = raw.get("task")
    if task not in TASKS:
        raise ValueError(f"{ckpt_path}: checkpoint has no known task in hyper_parameters.config (got {task!r})")
    module = importlib.import_module(TASKS[task])
    cfg = load_config(module.CONFIGS[task], data=raw)
    model, run = module.analysis_inputs(cfg, Path(ckpt_path))
    return cfg, model, run
