"""``bsd evaluate speech --checkpoint CKPT --manifest valid.tsv [--out DIR] [--resume]``.

Scores a pretraining checkpoint on a manifest: validation loss in bits per masked frame and
its parts, contrastive accuracy, code perplexity. Batches are cropped deterministically and
the masks and distractors of batch ``i`` come from ``data.eval_seed + i``, so the same
checkpoint and manifest give identical numbers every time. Runs through the shared harness:
the run directory gets ``config.yaml`` (task ``wav2vec2_eval``) and ``metrics.json``.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from bio_speech_dyt.config import ConfigError, JobConfig
from bio_speech_dyt.harness import RunDir
from speech.data.prepare import read_prepared
from speech.jobs.pretrain import loaders, restore
from speech.loss import Totals, eval_loss

TASK = "wav2vec2_eval"


@dataclasses.dataclass
class SpeechEvalConfig(JobConfig):
    task: str = TASK
    checkpoint: str = ""
    manifest: str = ""


def configure(checkpoint: Path, manifest: Path) -> SpeechEvalConfig:
    """The evaluation's config, checked before a run directory is made."""
    checkpoint, manifest = Path(checkpoint), Path(manifest)
    if not manifest.is_file():
        raise FileNotFoundError(f"manifest not found: {manifest}")
    read_prepared(manifest.parent, manifests=(manifest.name,))  # refuses an interrupted or corrupted prepare
    restore(checkpoint)  # a readable wav2vec 2.0 checkpoint, or an error naming it
    return SpeechEvalConfig(checkpoint=str(checkpoint), manifest=str(manifest))


def default_out(checkpoint: Path) -> Path:
    """``RUN_DIR/eval`` beside the checkpoint's ``checkpoints/`` folder."""
    return Path(checkpoint).resolve().parent.parent / "eval"


def run(cfg: SpeechEvalConfig, run: RunDir) -> dict:
    if not cfg.checkpoint or not cfg.manifest:
        raise ConfigError("checkpoint and manifest must both be set (--checkpoint, --manifest)")
    checkpoint, manifest = Path(cfg.checkpoint), Path(cfg.manifest)
    train_cfg, model = restore(checkpoint)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    _, loader = loaders(train_cfg, None, manifest)
    totals = Totals()
    for i, batch in enumerate(loader):
        totals.add(eval_loss(model, batch.to(device), train_cfg.model, train_cfg.data.eval_seed + i))
    metrics = totals.metrics(model.num_distractors)
    metrics.update(norm=train_cfg.model.norm, checkpoint=str(checkpoint), manifest=str(manifest),
                   utterances=len(loader.dataset), eval_seed=train_cfg.data.eval_seed)
    print(json.dumps(metrics, indent=2))
    return metrics
