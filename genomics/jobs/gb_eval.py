"""``bsd evaluate genomic-benchmarks``: fine-tune and test under the GenomicBenchmarks protocol.

Per task and seed: a class-stratified 90/10 train/validation split of the task's train set
(seeded), ``trainer.max_epochs`` epochs of fine-tuning from a pretraining checkpoint (or from
scratch), the best-validation-accuracy weights evaluated on the test split. The model is sized
from the task (HyenaDNA's filter length ``l_max = max_length + 2``, as hyena-dna does).

RUN_DIR: ``config.yaml``, ``metrics.json`` (``test_accuracy`` mean over seeds, fraction;
``test_accuracy_std``; ``per_seed``; ``norm``; per-epoch ``valid_curve``; one entry per task
under ``tasks`` and their mean at top level), ``results.md`` and ``TASK/seedN/`` per fine-tuning.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import lightning as L
import numpy as np
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from bio_speech_dyt.config import ConfigError, JobConfig, TrainerConfig, load_config, read_yaml, to_dict
from bio_speech_dyt.io import write_json, write_text
from bio_speech_dyt.train import build_trainer, load_module_weights
from genomics.jobs.modules import ClassifierModule, build_backbone, norm_summary
from genomics.models.caduceus import CaduceusConfig
from genomics.models.heads import SequenceClassifier
from genomics.models.hyena import HyenaDNAConfig

if TYPE_CHECKING:
    from genomics.data.gb import GBTask


@dataclasses.dataclass
class GBDataConfig:
    path: str = "data/synthetic/gb"  # used when no --data is given
    batch_size: int = 128
    rc_prob: float = 0.0  # reverse-complement augmentation while fine-tuning
    val_fraction: float = 0.1
    num_workers: int = 0


@dataclasses.dataclass
class HeadConfig:
    mask_padding: bool = True  # False: mean over padding too (the HyenaDNA/Caduceus decoders)
    conjoin: bool = False  # post-hoc conjoining (Caduceus-Ph): average logits of x and RC(x) at eval


def _gb_trainer() -> TrainerConfig:
    return TrainerConfig(max_epochs=10, checkpoint_every_n_steps=1_000_000, log_every_n_steps=50)


@dataclasses.dataclass
class HyenaGBConfig(JobConfig):
    task: str = "hyenadna_gb"
    seeds: list[int] = dataclasses.field(default_factory=lambda: [1, 2, 3])
    model: HyenaDNAConfig = dataclasses.field(default_factory=HyenaDNAConfig)
    data: GBDataConfig = dataclasses.field(default_factory=GBDataConfig)
    head: HeadConfig = dataclasses.field(default_factory=HeadConfig)
    trainer: TrainerConfig = dataclasses.field(default_factory=_gb_trainer)


@dataclasses.dataclass
class CaduceusGBConfig(HyenaGBConfig):
    task: str = "caduceus_gb"
    model: CaduceusConfig = dataclasses.field(default_factory=CaduceusConfig)


GBConfig = HyenaGBConfig | CaduceusGBConfig
CONFIGS = {"hyenadna_gb": HyenaGBConfig, "caduceus_gb": CaduceusGBConfig}


def load_gb_config(path: Path | str, overrides: Sequence[str] = ()) -> GBConfig:
    task = read_yaml(path).get("task")
    if task not in CONFIGS:
        raise ConfigError(f"{path}: 'task' must be one of {sorted(CONFIGS)} for GenomicBenchmarks, got {task!r}")
    return load_config(CONFIGS[task], path, overrides)


def model_config_for(cfg: GBConfig, max_length: int, checkpoint: Path | None):
    """The backbone config: the checkpoint's architecture if any (its norm must match
    ``model.norm``, unless the checkpoint is an import that converted that norm to its own), sized
    for sequences of ``max_length``: HyenaDNA's filter length becomes ``max_length + 2``, except
    for a checkpoint that stores its filter's positional features (an import: they cover its
    ``l_max``, which must suffice)."""
    model_cfg = cfg.model
    if checkpoint is not None:
        hp = torch.load(checkpoint, map_location="cpu", weights_only=True).get("hyper_parameters", {})
        saved = (hp.get("config") or {}).get("model")
        if saved is None:
            raise ConfigError(f"{checkpoint}: no model config in the checkpoint's hyper_parameters")
        model_cfg = load_config(type(cfg.model), data=saved)
        converted = ((hp.get("import") or {}).get("norm_conversion") or {}).get("from")
        if model_cfg.norm != cfg.model.norm and converted != cfg.model.norm:
            raise ConfigError(f"{checkpoint}: pretrained with norm {model_cfg.norm!r}, but model.norm is {cfg.model.norm!r}")
    if isinstance(model_cfg, HyenaDNAConfig):
        if checkpoint is None or not model_cfg.filter_pos_from_checkpoint:
            return dataclasses.replace(model_cfg, l_max=max_length + 2)
        if model_cfg.l_max < max_length + 2:
            raise ConfigError(f"{checkpoint}: its filter covers {model_cfg.l_max} positions; the task needs {max_length + 2}")
    return model_cfg


class ValidationCurve(L.Callback):
    """Per-epoch validation loss and accuracy."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        m = trainer.callback_metrics
        self.rows.append({"epoch": trainer.current_epoch, "step": trainer.global_step,
                          "valid_loss": float(m["valid_loss"]), "valid_accuracy": float(m["valid_accuracy"])})


def fine_tune(cfg: GBConfig, task: GBTask, seed: int, run_dir: Path, checkpoint: Path | None) -> dict:
    """One seed: split, fine-tune, pick the best validation epoch, test. Returns its results."""
    from genomics.data.gb import GBDataset, gb_train_val_split

    L.seed_everything(seed, workers=True, verbose=False)
    x, y = task.split("train")
    x_test, y_test = task.split("test")
    train_idx, val_idx = gb_train_val_split(y, seed, cfg.data.val_fraction)
    backbone = build_backbone(model_config_for(cfg, task.max_length, checkpoint))
    if checkpoint is not None:
        load_module_weights(backbone, checkpoint)
    model = SequenceClassifier(backbone, task.num_classes, cfg.head.mask_padding, cfg.head.conjoin)
    d = cfg.data

    def loader(ids, labels, train: bool) -> DataLoader:
        ds = GBDataset(ids, labels, rc_prob=d.rc_prob if train else 0.0, seed=seed)
        return DataLoader(ds, batch_size=d.batch_size, shuffle=train, num_workers=d.num_workers)

    train_loader = loader(x[train_idx], y[train_idx], True)
    total = cfg.trainer.max_steps if cfg.trainer.max_steps > 0 else len(train_loader) * (cfg.trainer.max_epochs or 1)
    module = ClassifierModule(model, cfg.optim, total, cfg.trainer.nonfinite_loss, to_dict(cfg))
    best = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor="valid_accuracy", mode="max",
                           save_top_k=1, save_weights_only=True, enable_version_counter=False)
    curve = ValidationCurve()
    trainer = build_trainer(cfg, run_dir, [best, curve])
    trainer.fit(module, train_loader, loader(x[val_idx], y[val_idx], False))
    test = trainer.test(module, loader(x_test, y_test, False), ckpt_path=best.best_model_path, verbose=False,
                        weights_only=True)[0]
    best_row = max(curve.rows, key=lambda r: r["valid_accuracy"])
    return {"seed": seed, "test_accuracy": float(test["test_accuracy"]), "test_loss": float(test["test_loss"]),
            "best_epoch": best_row["epoch"], "best_valid_accuracy": best_row["valid_accuracy"],
            "valid_curve": curve.rows, "num_parameters": sum(p.numel() for p in model.parameters())}


def _summary(name: str, runs: list[dict]) -> dict:
    acc = np.array([r["test_accuracy"] for r in runs])
    return {
        "task": name,
        "test_accuracy": float(acc.mean()),
        "test_accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
        "per_seed": [{k: v for k, v in r.items() if k != "valid_curve"} for r in runs],
        "valid_curve": {str(r["seed"]): r["valid_curve"] for r in runs},
    }


def results_table(metrics: dict) -> str:
    """Markdown: one row per task, test accuracy (%) mean ± std over seeds, and their mean."""
    seeds = ", ".join(str(s) for s in metrics["seeds"])
    lines = [f"# GenomicBenchmarks — norm `{metrics['norm']}`, {metrics['init']}, seeds {seeds}", "",
             "| task | test accuracy (%) | per seed |", "|---|---|---|"]
    for name, t in metrics["tasks"].items():
        per = " / ".join(f"{100 * r['test_accuracy']:.1f}" for r in t["per_seed"])
        lines.append(f"| {name} | {100 * t['test_accuracy']:.2f} ± {100 * t['test_accuracy_std']:.2f} | {per} |")
    if len(metrics["tasks"]) > 1:
        lines.append(f"| **mean** | **{100 * metrics['test_accuracy']:.2f}** | |")
    return "\n".join(lines) + "\n"


def evaluate_gb(config: Path | str, data: Sequence[Path] | None = None, checkpoint: Path | None = None,
                seeds: Sequence[int] | None = None, overrides: Sequence[str] = (), out: Path | None = None) -> dict:
    from genomics.data.gb import GBTask

    cfg = load_gb_config(config, overrides)
    seeds = list(seeds or cfg.seeds)
    if not seeds:
        raise ConfigError("no seeds to evaluate (--seeds or the config's seeds)")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    tasks = [GBTask.load(p) for p in (data or [Path(cfg.data.path)])]
    out = Path(out) if out else Path("runs") / Path(config).stem
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    model_cfg = model_config_for(cfg, tasks[0].max_length, checkpoint)
    print(norm_summary(build_backbone(model_cfg)))

    per_task = {}
    for task in tasks:
        runs = []
        for seed in seeds:
            print(f"== {task.name} seed {seed} ==")
            runs.append(fine_tune(cfg, task, seed, out / task.name / f"seed{seed}", checkpoint))
            print(f"{task.name} seed {seed}: test accuracy {runs[-1]['test_accuracy']:.4f}")
        per_task[task.name] = _summary(task.name, runs)
    seed_means = np.mean([[r["test_accuracy"] for r in t["per_seed"]] for t in per_task.values()], axis=0)
    metrics = {
        "norm": model_cfg.norm,
        "init": f"from {checkpoint}" if checkpoint else "from scratch",
        "checkpoint": str(checkpoint) if checkpoint else None,
        "seeds": seeds,
        "test_accuracy": float(np.mean([t["test_accuracy"] for t in per_task.values()])),
        "test_accuracy_std": float(seed_means.std(ddof=1)) if len(seeds) > 1 else 0.0,
        "tasks": per_task,
    }
    if len(per_task) == 1:
        (only,) = per_task.values()
        metrics.update(task=only["task"], per_seed=only["per_seed"], valid_curve=only["valid_curve"])
    write_json(out / "metrics.json", metrics)
    table = results_table(metrics)
    write_text(out / "results.md", table)
    print(table + f"run directory: {out}")
    return metrics
