"""``bsd evaluate genomic-benchmarks``: fine-tune and test under the GenomicBenchmarks protocol.

Per task and seed: a class-stratified train/validation split of the task's train set
(seeded), ``trainer.max_epochs`` epochs of fine-tuning from a pretraining checkpoint (or from
scratch), the best-validation-accuracy weights evaluated on the test split. The model is sized
from the task (:attr:`genomics.jobs.specs.ModelSpec.sized_for`); with a checkpoint, the
checkpoint's architecture (its norm included) is the model, and HyenaDNA keeps its ``l_max``
(its implicit filters are functions of position / l_max, so resizing would change them; the
Caduceus GB wrapper loads the pretrained ``model_config.json`` likewise).

RUN_DIR: ``config.yaml`` (with the ``--data`` folders, ``--checkpoint`` and seeds resolved),
``metrics.json`` (``test_accuracy`` mean over seeds, fraction; ``test_accuracy_std``;
``per_seed``; ``norm``; per-epoch ``valid_curve``; one entry per task under ``tasks`` and their
mean at top level), ``results.md``, and per fine-tuning ``TASK/seedN/`` with ``metrics.csv``,
``alpha.csv`` and ``result.json`` — written when that seed finishes, so ``--resume`` skips it.
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Annotated

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from bio_speech_dyt.checkpoints import CheckpointError, checkpoint_config, load_weights
from bio_speech_dyt.config import AtLeastOne, ConfigError, Fraction, JobConfig, NonNegative, TrainerConfig, load_config, to_dict
from bio_speech_dyt.harness import RunDir, StepPlan
from bio_speech_dyt.io import write_json, write_text
from bio_speech_dyt.train import build_trainer
from bio_speech_dyt.train.callbacks import RunFiles
from genomics.jobs.modules import ClassifierModule, norm_summary
from genomics.jobs.specs import SPECS, ModelSpec, spec_for
from genomics.models.heads import SequenceClassifier

RESULT = "result.json"


@dataclasses.dataclass
class GBDataConfig:
    path: str = "data/synthetic/gb"  # one prepared task; --data sets ``paths`` instead
    paths: list[str] = dataclasses.field(default_factory=list)  # several tasks (``--data A B``)
    batch_size: Annotated[int, AtLeastOne] = 128
    rc_prob: Annotated[float, Fraction] = 0.0  # reverse-complement augmentation while fine-tuning
    val_fraction: Annotated[float, Fraction] = 0.1
    num_workers: Annotated[int, NonNegative] = 0
    drop_last: bool = False  # drop the last partial training batch (the Caduceus loader's drop_last)
    # sequences the schedule's horizon counts per epoch, ceil(schedule_len / batch_size) steps; None: the
    # training split's. The Caduceus GB recipe uses its dataset.train_len, the task's train + test size
    schedule_len: Annotated[int, AtLeastOne] | None = None

    def task_dirs(self) -> list[Path]:
        return [Path(p) for p in (self.paths or [self.path])]


@dataclasses.dataclass
class HeadConfig:
    mask_padding: bool = True  # False: mean over padding too (the HyenaDNA/Caduceus decoders)
    conjoin: bool = False  # post-hoc conjoining (Caduceus-Ph): average logits of x and RC(x) at eval


def _gb_trainer() -> TrainerConfig:
    return TrainerConfig(max_epochs=10, checkpoint_every_n_steps=1_000_000, log_every_n_steps=50)


def _gb_config(spec: ModelSpec) -> type:
    return dataclasses.make_dataclass(
        f"{spec.config_class.__name__.removesuffix('Config')}GBConfig",
        [("task", str, dataclasses.field(default=f"{spec.name}_gb")),
         ("seeds", list[int], dataclasses.field(default_factory=lambda: [1, 2, 3])),
         ("checkpoint", "str | None", dataclasses.field(default=None)),  # pretraining checkpoint; None: from scratch
         ("model", spec.config_class, dataclasses.field(default_factory=spec.config_class)),
         ("data", GBDataConfig, dataclasses.field(default_factory=GBDataConfig)),
         ("head", HeadConfig, dataclasses.field(default_factory=HeadConfig)),
         ("trainer", TrainerConfig, dataclasses.field(default_factory=_gb_trainer)),
         # seed of the model's init and the data order; None: each split seed (seeds) seeds them too. The
         # Caduceus GB wrapper varies only the split (dataset.train_val_split_seed) under train.seed 2222
         ("init_seed", "int | None", dataclasses.field(default=None))],
        bases=(JobConfig,), namespace={"__module__": __name__})


CONFIGS = {f"{name}_gb": _gb_config(spec) for name, spec in SPECS.items()}


def with_checkpoint_model(cfg, checkpoint: Path):
    """``cfg`` with the checkpoint's architecture (a pretraining checkpoint of the same model
    kind; its norm wins over the YAML's — e.g. a LayerNorm model converted to DyT)."""
    saved = checkpoint_config(checkpoint)
    spec = spec_for(cfg.model)
    if not str(saved.get("task", "")).startswith(spec.name + "_"):
        raise CheckpointError(f"{checkpoint}: a {saved.get('task')!r} checkpoint, but {cfg.task} fine-tunes "
                              f"{spec.name}; pass a {spec.name}_pretrain checkpoint or a {saved.get('task', '?').split('_')[0]}_gb config")
    model_cfg = load_config(spec.config_class, data=saved.get("model") or {})
    if model_cfg.norm != cfg.model.norm:
        print(f"note: {checkpoint} has norm {model_cfg.norm!r}; the config says {cfg.model.norm!r}: "
              f"fine-tuning the checkpoint's {model_cfg.norm}")
    return dataclasses.replace(cfg, model=model_cfg, checkpoint=str(checkpoint))


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


def fine_tune(cfg, task, seed: int, run_dir: Path) -> dict:
    """One seed: split, fine-tune, pick the best validation epoch, test. Returns its results."""
    from genomics.data.gb import GBDataset, gb_train_val_split

    # each seed is independent of the others
    L.seed_everything(seed if cfg.init_seed is None else cfg.init_seed, workers=True, verbose=False)
    x, y = task.split("train")
    x_test, y_test = task.split("test")
    train_idx, val_idx = gb_train_val_split(y, seed, cfg.data.val_fraction)
    spec = spec_for(cfg.model)
    backbone = spec.build(spec.sized_for(cfg.model, task.max_length, cfg.checkpoint))
    if cfg.checkpoint is not None:
        load_weights(backbone, cfg.checkpoint)
    model = SequenceClassifier(backbone, task.num_classes, cfg.head.mask_padding, cfg.head.conjoin)
    d = cfg.data

    def loader(ids, labels, train: bool) -> DataLoader:
        ds = GBDataset(ids, labels, rc_prob=d.rc_prob if train else 0.0, seed=seed)
        return DataLoader(ds, batch_size=d.batch_size, shuffle=train, num_workers=d.num_workers,
                          drop_last=train and d.drop_last)

    train_loader = loader(x[train_idx], y[train_idx], True)
    per_epoch = len(train_loader) if d.schedule_len is None else -(-d.schedule_len // d.batch_size)
    plan = StepPlan.of(cfg.trainer, per_epoch)
    module = ClassifierModule(model, cfg.optim, plan.optimizer_steps, cfg.trainer.nonfinite_loss, to_dict(cfg))
    best = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor="valid_accuracy", mode="max",
                           save_top_k=1, save_weights_only=True, enable_version_counter=False)
    curve = ValidationCurve()
    files = RunFiles(run_dir, cfg.trainer.log_every_n_steps)
    trainer = build_trainer(cfg, run_dir, [best, curve, files], plan)
    trainer.fit(module, train_loader, loader(x[val_idx], y[val_idx], False))
    if not best.best_model_path:
        raise ConfigError(f"{task.name} seed {seed}: fine-tuning ended before its first validation "
                          f"(trainer.max_steps {cfg.trainer.max_steps} < one epoch of {len(train_loader)} batches?); "
                          "raise trainer.max_steps / max_epochs or set trainer.val_check_interval")
    test = trainer.test(module, loader(x_test, y_test, False), ckpt_path=best.best_model_path, verbose=False,
                        weights_only=True)[0]
    best_row = max(curve.rows, key=lambda r: r["valid_accuracy"])
    return {"seed": seed, "test_accuracy": float(test["test_accuracy"]), "test_loss": float(test["test_loss"]),
            "best_epoch": best_row["epoch"], "best_valid_accuracy": best_row["valid_accuracy"],
            "valid_curve": curve.rows, "num_parameters": sum(p.numel() for p in model.parameters())}


def _seed_result(cfg, task, seed: int, out: Path, resume: bool) -> dict:
    """A finished seed's ``result.json`` when resuming, else a fresh fine-tuning (a partial
    folder of a killed attempt is cleared first: nothing in it is a result)."""
    import json

    seed_dir = out / task.name / f"seed{seed}"
    done = seed_dir / RESULT
    if resume and done.is_file():
        print(f"{task.name} seed {seed}: finished earlier ({done}); kept")
        return json.loads(done.read_text())
    if seed_dir.exists():
        shutil.rmtree(seed_dir)
    print(f"== {task.name} seed {seed} ==")
    result = fine_tune(cfg, task, seed, seed_dir)
    write_json(done, result)
    print(f"{task.name} seed {seed}: test accuracy {result['test_accuracy']:.4f}")
    return result


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


def analysis_inputs(cfg, ckpt_path: Path):
    """A fine-tuned classifier (eval mode) from one of a run's ``TASK/seedN/checkpoints/*.ckpt`` and
    a forward pass over the first 64 test sequences of its (first) task, for the report's norm
    analysis of the fine-tuned model."""
    import torch

    task = load_tasks(cfg)[0]
    spec = spec_for(cfg.model)
    model = SequenceClassifier(spec.build(spec.sized_for(cfg.model, task.max_length, cfg.checkpoint)),
                               task.num_classes, cfg.head.mask_padding, cfg.head.conjoin)
    load_weights(model, ckpt_path)
    model.eval()
    ids = torch.as_tensor(task.split("test")[0][:64])

    def forward():
        with torch.no_grad():
            return model(ids)

    return model, forward


def load_tasks(cfg) -> list:
    from genomics.data.gb import GBTask

    return [GBTask.load(p) for p in cfg.data.task_dirs()]


def run(cfg, run: RunDir) -> dict:
    tasks = load_tasks(cfg)
    spec = spec_for(cfg.model)
    print(norm_summary(spec.build(spec.sized_for(cfg.model, tasks[0].max_length, cfg.checkpoint))))
    per_task = {t.name: _summary(t.name, [_seed_result(cfg, t, s, run.path, run.resume) for s in cfg.seeds])
                for t in tasks}
    seed_means = np.mean([[r["test_accuracy"] for r in t["per_seed"]] for t in per_task.values()], axis=0)
    metrics = {
        "norm": cfg.model.norm,
        "init": f"from {cfg.checkpoint}" if cfg.checkpoint else "from scratch",
        "checkpoint": cfg.checkpoint,
        "seeds": list(cfg.seeds),
        "test_accuracy": float(np.mean([t["test_accuracy"] for t in per_task.values()])),
        "test_accuracy_std": float(seed_means.std(ddof=1)) if len(cfg.seeds) > 1 else 0.0,
        "tasks": per_task,
    }
    if len(per_task) == 1:
        (only,) = per_task.values()
        metrics.update(task=only["task"], per_seed=only["per_seed"], valid_curve=only["valid_curve"])
    table = results_table(metrics)
    write_text(run.path / "results.md", table)
    print(table)
    return metrics


def configure(cfg, data: list[Path] | None, checkpoint: Path | None, seeds: list[int] | None):
    """The evaluation's resolved config: ``--data``, ``--checkpoint`` and ``--seeds`` folded in
    and checked (tasks load, the checkpoint fits) before the run directory is touched."""
    if data:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, paths=[str(p) for p in data]))
    if seeds:
        cfg = dataclasses.replace(cfg, seeds=list(seeds))
    if not cfg.seeds:
        raise ConfigError("no seeds to evaluate (--seeds or the config's seeds)")
    if checkpoint is not None or cfg.checkpoint is not None:
        cfg = with_checkpoint_model(cfg, Path(checkpoint or cfg.checkpoint))
    load_tasks(cfg)
    return cfg
