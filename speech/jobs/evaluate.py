"""``bsd evaluate speech --checkpoint CKPT --manifest valid.tsv [--out DIR]``.

Scores a pretraining checkpoint on a manifest: validation loss in bits per masked frame and
its parts, contrastive accuracy, code perplexity. Batches are cropped deterministically and
the masks and distractors of batch ``i`` come from ``data.eval_seed + i``, so the same
checkpoint and manifest give identical numbers every time.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from bio_speech_dyt.io import write_json
from speech.data.prepare import read_prepared
from speech.jobs.pretrain import loaders, restore
from speech.loss import Totals, eval_loss


def evaluate_speech(checkpoint: Path, manifest: Path, out: Path | None = None) -> dict:
    """Write ``metrics.json`` into ``out`` (default: ``RUN_DIR/eval`` beside the checkpoint's
    ``checkpoints/`` folder) and return it."""
    checkpoint, manifest = Path(checkpoint), Path(manifest)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    read_prepared(manifest.parent, manifests=(manifest.name,))  # refuses an interrupted or corrupted prepare
    cfg, model = restore(checkpoint)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    _, loader = loaders(cfg, None, manifest)
    totals = Totals()
    for i, batch in enumerate(loader):
        totals.add(eval_loss(model, batch.to(device), cfg.model, cfg.data.eval_seed + i))
    metrics = totals.metrics(model.num_distractors)
    metrics.update(norm=cfg.model.norm, checkpoint=str(checkpoint), manifest=str(manifest),
                   utterances=len(loader.dataset), eval_seed=cfg.data.eval_seed)
    out = Path(out) if out else checkpoint.resolve().parent.parent / "eval"
    write_json(out / "metrics.json", metrics)
    print(json.dumps(metrics, indent=2))
    return metrics
