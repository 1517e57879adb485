"""``bsd pretrain``: HyenaDNA next-token and Caduceus masked-LM pretraining on a prepared genome.

Train on the ``train`` intervals, validate on ``valid``; ``metrics.json`` adds the Markov
baselines fitted on train and scored on valid (``baseline_unigram_loss``,
``baseline_kmer_loss``, nats/base) so every loss curve is read against them.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from bio_speech_dyt.config import JobConfig, to_dict
from bio_speech_dyt.dyt import DyT
from bio_speech_dyt.train import PassIndexed, StepBatchSampler, load_module_weights, run_training
from genomics.jobs.modules import TokenLMModule, build_backbone, norm_summary
from genomics.models.caduceus import CaduceusConfig
from genomics.models.hyena import HyenaDNAConfig


@dataclasses.dataclass
class PretrainDataConfig:
    path: str = "data/synthetic/genome"
    max_length: int = 1024
    batch_size: int = 8
    rc_prob: float = 0.0  # reverse-complement augmentation
    mlm_probability: float = 0.15  # Caduceus only
    num_workers: int = 0


@dataclasses.dataclass
class HyenaPretrainConfig(JobConfig):
    task: str = "hyenadna_pretrain"
    model: HyenaDNAConfig = dataclasses.field(default_factory=HyenaDNAConfig)
    data: PretrainDataConfig = dataclasses.field(default_factory=PretrainDataConfig)
    init_checkpoint: str | None = None  # start from these weights (a checkpoint written by `bsd import`)


@dataclasses.dataclass
class CaduceusPretrainConfig(JobConfig):
    task: str = "caduceus_pretrain"
    model: CaduceusConfig = dataclasses.field(default_factory=CaduceusConfig)
    data: PretrainDataConfig = dataclasses.field(default_factory=lambda: PretrainDataConfig(rc_prob=0.5))
    init_checkpoint: str | None = None  # start from these weights (a checkpoint written by `bsd import`)


PretrainConfig = HyenaPretrainConfig | CaduceusPretrainConfig
CONFIGS = {"hyenadna_pretrain": HyenaPretrainConfig, "caduceus_pretrain": CaduceusPretrainConfig}


def _is_hyena(cfg: PretrainConfig) -> bool:
    return isinstance(cfg.model, HyenaDNAConfig)


def build_dataset(cfg: PretrainConfig, split: str) -> Dataset:
    from genomics.data.pretrain import CaduceusMLMDataset, HyenaPretrainDataset

    d = cfg.data
    rc_prob = d.rc_prob if split == "train" else 0.0
    if _is_hyena(cfg):
        if d.max_length > cfg.model.l_max:
            raise ValueError(f"data.max_length {d.max_length} exceeds model.l_max {cfg.model.l_max}")
        return HyenaPretrainDataset(d.path, split, d.max_length, rc_prob=rc_prob, seed=cfg.seed)
    return CaduceusMLMDataset(d.path, split, d.max_length, mlm_probability=d.mlm_probability, rc_prob=rc_prob,
                              seed=cfg.seed)


def _loader(cfg: PretrainConfig, split: str) -> DataLoader:
    """Step-bounded training (``trainer.max_steps``) reads batches by optimizer step
    (:class:`StepBatchSampler`): a resumed run continues the exact data order, and DDP ranks
    share one global batch. Epoch-bounded training shuffles per epoch."""
    dataset = build_dataset(cfg, split)
    workers = {"num_workers": cfg.data.num_workers, "persistent_workers": cfg.data.num_workers > 0}
    t = cfg.trainer
    if split != "train" or t.max_steps <= 0:
        return DataLoader(dataset, batch_size=cfg.data.batch_size, shuffle=split == "train", **workers)
    world = (t.devices if isinstance(t.devices, int) and t.devices > 0 else 1) * t.num_nodes
    sampler = StepBatchSampler(len(dataset), cfg.data.batch_size * world, seed=cfg.seed,
                               max_steps=t.max_steps * t.accumulate_grad_batches, pass_offsets=True)
    return DataLoader(PassIndexed(dataset), batch_sampler=sampler, **workers)


def _target_key(cfg: PretrainConfig) -> str:
    return "targets" if _is_hyena(cfg) else "labels"


def run(cfg: PretrainConfig, run_dir: Path, resume: bool) -> dict:
    from genomics.data.baselines import markov_baselines

    model = build_backbone(cfg.model)
    if cfg.init_checkpoint:
        load_module_weights(model, cfg.init_checkpoint)
        print(f"weights from {cfg.init_checkpoint}")
    print(norm_summary(model))
    train_loader, val_loader = _loader(cfg, "train"), _loader(cfg, "valid")
    t = cfg.trainer
    steps_per_epoch = max(1, len(train_loader) // t.accumulate_grad_batches)
    total_steps = t.max_steps if t.max_steps > 0 else steps_per_epoch * (t.max_epochs or 1)
    module = TokenLMModule(model, cfg.optim, total_steps, _target_key(cfg), t.nonfinite_loss, to_dict(cfg))
    baselines = markov_baselines(Path(cfg.data.path))
    print(f"baselines on valid (nats/base): unigram {baselines['baseline_unigram_loss']:.4f}, "
          f"best k-mer (order {baselines['baseline_kmer_order']}) {baselines['baseline_kmer_loss']:.4f}")

    def final_metrics(trainer) -> dict:
        extra = {"norm": cfg.model.norm, "num_dyt": sum(isinstance(m, DyT) for m in model.modules())}
        acc = trainer.callback_metrics.get("valid_accuracy")
        if acc is not None:
            extra["valid_accuracy"] = float(acc)
        return {**baselines, **extra}

    return run_training(cfg, module, train_loader, val_loader, run_dir, resume, final_metrics=final_metrics)


def analysis_inputs(cfg: PretrainConfig, ckpt_path: Path) -> tuple[nn.Module, Callable[[], torch.Tensor]]:
    """The checkpoint's model (eval mode) and a forward pass over one validation batch."""
    model = build_backbone(cfg.model)
    load_module_weights(model, ckpt_path)
    model.eval()
    batch = next(iter(_loader(cfg, "valid")))

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return model(batch["input_ids"])

    return model, forward
