"""``run_training``: one Lightning fit with the suite's run-directory layout.

RUN_DIR/config.yaml (written by :class:`bio_speech_dyt.harness.RunContext`), metrics.csv,
alpha.csv, checkpoints/{step*.ckpt,last.ckpt}, metrics.json, model.safetensors; TensorBoard /
W&B logs when ``trainer.loggers`` asks for them. Step arithmetic (accumulation, devices) comes
from :class:`bio_speech_dyt.harness.StepPlan`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar

from bio_speech_dyt.config import JobConfig
from bio_speech_dyt.harness import CHECKPOINTS as CHECKPOINT_DIR
from bio_speech_dyt.harness import LAST, StepPlan
from bio_speech_dyt.io import atomic_path, write_json
from bio_speech_dyt.train.callbacks import RunFiles
from bio_speech_dyt.train.checkpoint_io import AtomicCheckpointIO
from bio_speech_dyt.train.module import BaseModule
from bio_speech_dyt.train.sampling import StepBatchSampler

def last_checkpoint(run_dir: Path) -> Path | None:
    p = Path(run_dir) / CHECKPOINT_DIR / LAST
    return p if p.is_file() else None


def build_loggers(names: list[str], run_dir: Path) -> list:
    """Lightning loggers for ``trainer.loggers``; ``csv`` is the run's own metrics.csv
    (:class:`RunFiles`, which the report reads), the others are Lightning's."""
    loggers = []
    for name in dict.fromkeys(names):
        if name == "tensorboard":
            from lightning.pytorch.loggers import TensorBoardLogger

            loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=""))
        elif name == "wandb":
            from lightning.pytorch.loggers import WandbLogger

            loggers.append(WandbLogger(save_dir=str(run_dir), name=run_dir.name))
    return loggers


def build_trainer(cfg: JobConfig, run_dir: Path, callbacks: list[L.Callback] = (), plan: StepPlan | None = None,
                  **overrides: Any) -> L.Trainer:
    t = cfg.trainer
    plan = plan or StepPlan.of(t, batches_per_epoch=1)
    ckpt = ModelCheckpoint(
        dirpath=run_dir / CHECKPOINT_DIR,
        filename="step{step:07d}",
        auto_insert_metric_name=False,
        every_n_train_steps=max(1, t.checkpoint_every_n_steps),
        save_top_k=-1,
        save_last=True,
    )
    val_kwargs: dict[str, Any] = {}
    if plan.val_every_batches is not None:  # Lightning counts micro-batches here
        val_kwargs = {"val_check_interval": plan.val_every_batches, "check_val_every_n_epoch": None}
    loggers = build_loggers(t.loggers, Path(run_dir))
    kwargs: dict[str, Any] = dict(
        default_root_dir=str(run_dir),
        max_steps=t.max_steps,
        max_epochs=t.max_epochs if t.max_epochs is not None else (-1 if t.max_steps > 0 else None),
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,
        accelerator=t.accelerator,
        accumulate_grad_batches=t.accumulate_grad_batches,
        gradient_clip_val=cfg.optim.gradient_clip_val or None,
        deterministic=t.deterministic,
        logger=loggers or False,
        log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=t.progress_bar,
        enable_model_summary=False,
        limit_val_batches=t.limit_val_batches,
        num_sanity_val_steps=0,
        callbacks=[ckpt, *callbacks] + ([TQDMProgressBar(refresh_rate=max(1, t.log_every_n_steps))] if t.progress_bar else []),
        plugins=[AtomicCheckpointIO()],
        **val_kwargs,
    )
    kwargs.update(overrides)
    return L.Trainer(**kwargs)


def run_training(
    cfg: JobConfig,
    module: BaseModule,
    train_loader,
    val_loader,
    run_dir: Path,
    resume: bool = False,
    final_metrics: Callable[[L.Trainer], dict] | None = None,
    callbacks: list[L.Callback] = (),
    plan: StepPlan | None = None,
) -> dict:
    """Fit ``module``; write ``metrics.json`` and return it. The caller has seeded the run
    (:class:`bio_speech_dyt.harness.RunContext` does, once, before the model is built)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if plan is None:
        plan = StepPlan.of(cfg.trainer, None if cfg.trainer.max_steps > 0 else len(train_loader))
    files = RunFiles(run_dir, cfg.trainer.log_every_n_steps)
    # a StepBatchSampler shards the global batch over ranks itself
    own_sharding = isinstance(getattr(train_loader, "batch_sampler", None), StepBatchSampler)
    trainer = build_trainer(cfg, run_dir, [files, *callbacks], plan, use_distributed_sampler=not own_sharding)
    ckpt_path = last_checkpoint(run_dir) if resume else None
    if resume and ckpt_path is None:
        print(f"--resume: no {CHECKPOINT_DIR}/{LAST} in {run_dir}; starting from scratch")
    trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader, ckpt_path=ckpt_path, weights_only=True)
    # a full checkpoint (optimizer, loops, RNG): explicit, or Lightning logs a 'weights_only' default
    trainer.save_checkpoint(run_dir / CHECKPOINT_DIR / LAST, weights_only=False)
    metrics: dict[str, Any] = {
        "num_parameters": module.num_parameters(),
        "steps": trainer.global_step,
        "train_loss": module.last_train_logs.get("train_loss"),
        "skipped_steps": module.skipped_steps,
    }
    valid = trainer.callback_metrics.get("valid_loss")
    metrics["valid_loss"] = float(valid) if valid is not None else None
    if files.throughput is not None:
        metrics[module.throughput_key] = files.throughput
    if final_metrics is not None:
        metrics.update(final_metrics(trainer))
    if trainer.is_global_zero:
        export_weights(module.model, run_dir / "model.safetensors")
        write_json(run_dir / "metrics.json", metrics)
    return metrics


def export_weights(model: torch.nn.Module, path: Path) -> None:
    """The trained weights as safetensors (no pickle; shared tensors such as tied heads are
    stored once)."""
    from safetensors.torch import save_model

    with atomic_path(path) as tmp:
        save_model(model, str(tmp))


