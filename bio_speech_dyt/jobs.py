"""Running any registered task: ``resolve`` a YAML to ``(task, typed config)``, ``execute`` it in
a run directory through the harness, rebuild a checkpoint's model for analysis.

The tasks come from the domains' entry points (:mod:`bio_speech_dyt.tasks`); nothing here names
a domain.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from bio_speech_dyt.checkpoints import checkpoint_config
from bio_speech_dyt.config import ConfigError, load_config, read_yaml
from bio_speech_dyt.harness import METRICS, RunContext
from bio_speech_dyt.io import write_json
from bio_speech_dyt.tasks import Task, TaskKind, get_task


def resolve(config_path: str | Path, overrides: Sequence[str] = (), kind: TaskKind | None = None) -> tuple[Task, Any]:
    """``(task, typed config)`` for a job YAML and its ``--set`` overrides, fully validated."""
    raw = read_yaml(config_path)
    task = get_task(raw.get("task"), where=str(config_path))
    if kind is not None and task.kind != kind:
        raise ConfigError(f"{config_path}: task {task.name!r} is a {task.kind} task, not an {kind} one")
    return task, load_config(task.config_class, config_path, overrides)


def execute(task: Task, cfg: Any, out: Path, resume: bool = False) -> dict | None:
    """Run ``task`` into ``out``: lock, refuse or resume, write ``config.yaml``, seed, run, then
    write ``metrics.json`` (with ``task``, ``domain`` and ``loss_unit``, so that a run directory
    describes itself). Returns the metrics, or the finished run's when there was nothing to do."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    out = Path(out)
    with RunContext(task, cfg, out, resume, primary=rank_zero_only.rank == 0) as run:
        if run is None:
            return json.loads((out / METRICS).read_text())
        metrics = task.run(cfg, run)
        metrics = {**metrics, "task": task.name, "domain": task.domain, "loss_unit": task.loss_unit}
        if rank_zero_only.rank == 0:
            write_json(out / METRICS, metrics)
            print(f"run directory: {out}")
        return metrics


def pretrain(config_path: str | Path, overrides: Sequence[str] = (), out: str | Path | None = None,
             resume: bool = False) -> dict | None:
    task, cfg = resolve(config_path, overrides, kind="pretrain")
    return execute(task, cfg, Path(out) if out else Path("runs") / Path(config_path).stem, resume)


def load_checkpoint_model(ckpt_path: str | Path):
    """Rebuild the model of any pretraining or fine-tuning checkpoint for analysis: ``(cfg, model, forward)``
    where ``forward()`` feeds the model one real batch (the task's ``analysis_inputs``)."""
    raw = checkpoint_config(ckpt_path)
    task = get_task(raw.get("task"), where=f"{ckpt_path} (hyper_parameters.config)")
    if task.analysis_inputs is None:
        raise ConfigError(f"{ckpt_path}: task {task.name!r} has no norm analysis")
    cfg = load_config(task.config_class, data=raw)
    model, forward = task.analysis_inputs(cfg, Path(ckpt_path))
    return cfg, model, forward
