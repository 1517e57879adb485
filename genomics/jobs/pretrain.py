"""``bsd pretrain``: HyenaDNA next-token and Caduceus masked-LM pretraining on a prepared genome.

Train on the ``train`` intervals, validate on ``valid``; ``metrics.json`` adds the Markov
baselines fitted on train and scored on valid (``baseline_unigram_loss``,
``baseline_kmer_loss``, nats/base) so every loss curve is read against them.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from bio_speech_dyt.checkpoints import load_weights
from bio_speech_dyt.config import AtLeastOne, Fraction, JobConfig, NonNegative, to_dict
from bio_speech_dyt.dyt import DyT
from bio_speech_dyt.harness import RunDir, StepPlan
from bio_speech_dyt.train import PassIndexed, StepBatchSampler, run_training
from genomics.jobs.modules import TokenLMModule, norm_summary
from genomics.jobs.specs import SPECS, ModelSpec, spec_for


@dataclasses.dataclass
class PretrainDataConfig:
    path: str = "data/synthetic/genome"
    max_length: Annotated[int, AtLeastOne] = 1024
    batch_size: Annotated[int, AtLeastOne] = 8  # per device
    rc_prob: Annotated[float, Fraction] = 0.0  # reverse-complement augmentation
    mlm_probability: Annotated[float, Fraction] = 0.15  # Caduceus only
    num_workers: Annotated[int, NonNegative] = 0


def _pretrain_config(spec: ModelSpec) -> type:
    return dataclasses.make_dataclass(
        f"{spec.config_class.__name__.removesuffix('Config')}PretrainConfig",
        [("task", str, dataclasses.field(default=f"{spec.name}_pretrain")),
         ("model", spec.config_class, dataclasses.field(default_factory=spec.config_class)),
         ("data", PretrainDataConfig,
          dataclasses.field(default_factory=lambda: PretrainDataConfig(rc_prob=spec.default_rc_prob))),
         # start from these weights (a checkpoint written by `bsd import`)
         ("init_checkpoint", "str | None", dataclasses.field(default=None))],
        bases=(JobConfig,), namespace={"__module__": __name__})


CONFIGS = {f"{name}_pretrain": _pretrain_config(spec) for name, spec in SPECS.items()}


def _loader(cfg, split: str, plan: StepPlan | None) -> DataLoader:
    """Step-bounded training reads batches by optimizer step (:class:`StepBatchSampler`): a
    resumed run continues the exact data order, and DDP ranks share one global batch. Its
    length is the plan's micro-batches (optimizer steps × accumulation). Epoch-bounded training
    and validation shuffle per epoch / read in order."""
    dataset = spec_for(cfg.model).pretrain_dataset(cfg.data, split, cfg.seed, cfg.model)
    workers = {"num_workers": cfg.data.num_workers, "persistent_workers": cfg.data.num_workers > 0}
    if split != "train" or plan is None or not plan.step_bounded:
        return DataLoader(dataset, batch_size=cfg.data.batch_size, shuffle=split == "train", **workers)
    sampler = StepBatchSampler(len(dataset), cfg.data.batch_size * plan.world_size, seed=cfg.seed,
                               max_steps=plan.micro_batches, pass_offsets=True, accumulate=plan.accumulate)
    return DataLoader(PassIndexed(dataset), batch_sampler=sampler, **workers)


def run(cfg, run: RunDir) -> dict:
    from genomics.data.baselines import markov_baselines

    spec = spec_for(cfg.model)
    model = spec.build(cfg.model)
    if cfg.init_checkpoint:
        load_weights(model, cfg.init_checkpoint)
        print(f"weights from {cfg.init_checkpoint}")
    print(norm_summary(model))
    step_plan = StepPlan.of(cfg.trainer) if cfg.trainer.max_steps > 0 else None
    train_loader, val_loader = _loader(cfg, "train", step_plan), _loader(cfg, "valid", None)
    plan = step_plan or StepPlan.of(cfg.trainer, len(train_loader))
    module = TokenLMModule(model, cfg.optim, plan.optimizer_steps, spec.target_key, cfg.trainer.nonfinite_loss,
                           to_dict(cfg))
    baselines = markov_baselines(Path(cfg.data.path))
    print(f"baselines on valid (nats/base): unigram {baselines['baseline_unigram_loss']:.4f}, "
          f"best k-mer (order {baselines['baseline_kmer_order']}) {baselines['baseline_kmer_loss']:.4f}")

    def final_metrics(trainer) -> dict:
        extra = {"norm": cfg.model.norm, "num_dyt": sum(isinstance(m, DyT) for m in model.modules())}
        acc = trainer.callback_metrics.get("valid_accuracy")
        if acc is not None:
            extra["valid_accuracy"] = float(acc)
        return {**baselines, **extra}

    return run_training(cfg, module, train_loader, val_loader, run.path, run.resume, final_metrics=final_metrics,
                        plan=plan)


def restore(ckpt_path: Path, cfg) -> nn.Module:
    model = spec_for(cfg.model).build(cfg.model)
    load_weights(model, ckpt_path)
    return model.eval()


def analysis_inputs(cfg, ckpt_path: Path) -> tuple[nn.Module, Callable[[], torch.Tensor]]:
    """The checkpoint's model (eval mode) and a forward pass over one validation batch."""
    model = restore(ckpt_path, cfg)
    batch = next(iter(_loader(cfg, "valid", None)))

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return model(batch["input_ids"])

    return model, forward
