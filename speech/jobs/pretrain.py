"""``bsd pretrain`` for task ``wav2vec2_pretrain``: wav2vec 2.0 (fairseq2) with LayerNorm or DyT.

Lightning through the shared harness (``bio_speech_dyt.train``): AdamW groups without decay
on norms/DyT/biases, fairseq's polynomial decay with warmup, the run directory's
metrics.csv / alpha.csv / checkpoints / metrics.json. Logged per step: the loss and its parts
in bits per masked frame, contrastive accuracy, code and probability perplexity, the Gumbel
temperature, samples (utterances) per second; the DyT alphas go to alpha.csv.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

import lightning as L
import torch
from fairseq2.models.wav2vec2 import Wav2Vec2Model

from bio_speech_dyt.checkpoints import CheckpointError, checkpoint_config, load_weights
from bio_speech_dyt.config import JobConfig, OptimConfig, load_config, to_dict
from bio_speech_dyt.harness import RunDir, StepPlan
from bio_speech_dyt.io import write_json
from bio_speech_dyt.train import BaseModule, run_training
from speech.data.dataset import make_loader
from speech.data.prepare import read_prepared
from speech.loss import eval_loss, forward_loss
from speech.models.wav2vec2 import Wav2Vec2ModelConfig, build_wav2vec2

TASK = "wav2vec2_pretrain"
#: validation keys copied into metrics.json (callback metric ``valid_<key>`` → ``<key>``)
VALID_KEYS = ("loss_bits", "contrastive_bits", "diversity_bits", "penalty_bits", "contrastive_accuracy",
              "code_perplexity", "prob_perplexity")


@dataclasses.dataclass
class SpeechDataConfig:
    path: str = "data/synthetic/speech"  # a folder written by `bsd prepare librispeech|synthetic`
    train_manifest: str = "train.tsv"
    valid_manifest: str = "valid.tsv"
    max_tokens: int = 1_400_000  # samples per batch (per device)
    max_sample_size: int = 250_000  # longer utterances are cropped
    min_sample_size: int = 32_000  # shorter ones are dropped
    normalize: bool = False  # standardise each waveform (fairseq's task.normalize)
    num_workers: int = 0
    eval_seed: int = 1234  # masks and distractors of validation batch i come from eval_seed + i


def _fairseq_optim() -> OptimConfig:
    """fairseq's wav2vec 2.0 Base optimiser: Adam (0.9, 0.98), eps 1e-6, decoupled weight
    decay 0.01, polynomial decay after 32k warmup updates, no gradient clipping."""
    return OptimConfig(lr=5e-4, weight_decay=0.01, betas=(0.9, 0.98), eps=1e-6, scheduler="polynomial",
                       warmup_steps=32_000, min_lr_ratio=0.0, power=1.0, gradient_clip_val=0.0)


@dataclasses.dataclass
class Wav2Vec2PretrainConfig(JobConfig):
    task: str = TASK
    optim: OptimConfig = dataclasses.field(default_factory=_fairseq_optim)
    model: Wav2Vec2ModelConfig = dataclasses.field(default_factory=Wav2Vec2ModelConfig)
    data: SpeechDataConfig = dataclasses.field(default_factory=SpeechDataConfig)
    init_checkpoint: str | None = None  # start from these weights (a checkpoint written by `bsd import`)


CONFIGS = {TASK: Wav2Vec2PretrainConfig}


class Wav2Vec2Module(BaseModule):
    """The LightningModule: fairseq2's model, our loss in bits, fixed-seed validation."""

    throughput_key = "samples_per_s"

    def __init__(self, cfg: Wav2Vec2PretrainConfig, total_steps: int):
        model, report = build_wav2vec2(cfg.model)
        super().__init__(model, cfg.optim, total_steps, cfg.trainer.nonfinite_loss, config=to_dict(cfg))
        self.model_cfg = cfg.model
        self.eval_seed = cfg.data.eval_seed
        self.swap_report = report
        self.last_valid_step = -1

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # fairseq2's quantizer counts forward calls; pin its Gumbel temperature schedule to
        # optimizer updates (robust to gradient accumulation, skipped steps and resumes)
        self.model.quantizer.num_updates.fill_(self.global_step)

    def compute_loss(self, batch: torch.Tensor, stage: str):
        out = forward_loss(self.model, batch, self.model_cfg)
        return out.loss, out.parts(), batch.shape[0]

    def validation_step(self, batch: torch.Tensor, batch_idx: int):
        out = eval_loss(self.model, batch, self.model_cfg, self.eval_seed + batch_idx)
        parts = out.parts()
        del parts["temperature"]  # validation uses hard codebook choices
        logs = {"valid_loss": out.loss, **{f"valid_{k}": v for k, v in parts.items()}}
        # weights = masked frames: epoch means are totals / all masked frames, as fairseq's
        self.log_dict(logs, on_step=False, on_epoch=True, sync_dist=True, batch_size=out.num_targets)
        return out.loss

    def on_validation_epoch_end(self) -> None:
        self.last_valid_step = self.global_step


def loaders(cfg: Wav2Vec2PretrainConfig, train_manifest: Path | None, valid_manifest: Path | None):
    """``(train loader or None, valid loader or None)`` with the job's batching settings; a
    step-bounded training sampler yields the plan's micro-batches (steps × accumulation)."""
    d = cfg.data
    common = dict(max_tokens=d.max_tokens, min_sample_size=d.min_sample_size, max_sample_size=d.max_sample_size,
                  normalize=d.normalize, seed=cfg.seed)
    micro = StepPlan.of(cfg.trainer).micro_batches if cfg.trainer.max_steps > 0 else None
    train = (make_loader(train_manifest, train=True, num_workers=d.num_workers, max_steps=micro, **common)
             if train_manifest else None)
    valid = make_loader(valid_manifest, train=False, num_workers=0, **common) if valid_manifest else None
    return train, valid


def _final_metrics(module: Wav2Vec2Module, val_loader) -> Callable[[L.Trainer], dict]:
    """metrics.json extras from a validation at the final step (run now if the last one was earlier)."""

    def final(trainer: L.Trainer) -> dict:
        if module.last_valid_step != trainer.global_step:
            trainer.validate(module, val_loader, verbose=False)
        cm = trainer.callback_metrics
        out: dict[str, Any] = {k: float(cm[f"valid_{k}"]) for k in VALID_KEYS if f"valid_{k}" in cm}
        out["valid_loss_bits"] = out.pop("loss_bits")
        out["valid_loss"] = out["valid_loss_bits"]
        out["num_distractors"] = module.model.num_distractors
        out["norm"] = module.model_cfg.norm
        out["norms_swapped"] = len(module.swap_report) if module.swap_report is not None else 0
        return out

    return final


def run(cfg: Wav2Vec2PretrainConfig, run: RunDir) -> dict:
    data = Path(cfg.data.path)
    read_prepared(data)  # refuses an interrupted or corrupted prepare before any manifest is read
    train_loader, val_loader = loaders(cfg, data / cfg.data.train_manifest, data / cfg.data.valid_manifest)
    plan = StepPlan.of(cfg.trainer, len(train_loader))
    module = Wav2Vec2Module(cfg, plan.optimizer_steps)
    if cfg.init_checkpoint:
        load_weights(module.model, cfg.init_checkpoint)
        print(f"weights from {cfg.init_checkpoint}")
    if module.swap_report is not None:
        print(module.swap_report.table())
        write_json(run.path / "norm_swaps.json", module.swap_report.to_dict())
    print(f"wav2vec 2.0 ({cfg.model.arch}, {cfg.model.norm}): {module.num_parameters():,} parameters")
    metrics = run_training(cfg, module, train_loader, val_loader, run.path, run.resume,
                           final_metrics=_final_metrics(module, val_loader), plan=plan)
    print(json.dumps({k: metrics[k] for k in ("steps", "valid_loss_bits", "contrastive_bits", "contrastive_accuracy",
                                              "num_distractors") if k in metrics}))
    return metrics


def restore(ckpt_path: Path) -> tuple[Wav2Vec2PretrainConfig, Wav2Vec2Model]:
    """The config stored in a checkpoint and its model with the trained weights (eval mode)."""
    raw = checkpoint_config(ckpt_path)
    if raw.get("task") != TASK:
        raise CheckpointError(f"{ckpt_path}: not a {TASK} checkpoint (task {raw.get('task')!r}); "
                              "pass a checkpoint of a wav2vec 2.0 pretraining run")
    cfg = load_config(Wav2Vec2PretrainConfig, data=raw)
    model, _ = build_wav2vec2(cfg.model)
    load_weights(model, ckpt_path)
    return cfg, model.eval()


def analysis_inputs(cfg: Wav2Vec2PretrainConfig, ckpt_path: Path):
    """``(model, run)``: the checkpoint's model and one fixed-seed forward pass on the first
    validation batch (for the report's norm input/output plots)."""
    _, model = restore(ckpt_path)
    _, val_loader = loaders(cfg, None, Path(cfg.data.path) / cfg.data.valid_manifest)
    batch = next(iter(val_loader))

    def run_once():
        return eval_loss(model, batch, cfg.model, cfg.data.eval_seed)

    return model, run_once
