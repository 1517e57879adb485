"""``bsd import`` for DNA models: a published HyenaDNA or Caduceus folder -> our model, strictly
loaded, optionally with its norms converted to DyT, written as a run directory.

RUN_DIR gets ``config.yaml`` (a ``bsd pretrain`` config whose ``init_checkpoint`` continues from
the import), ``checkpoints/last.ckpt`` (for ``--checkpoint`` of ``bsd evaluate genomic-benchmarks``),
``model.safetensors`` and ``import.json`` (source, layout, parameter count, every key mapped,
filled or ignored and why, notes on the config, the norm conversion report).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from bio_speech_dyt.config import to_dict
from bio_speech_dyt.pretrained import (
    LAST_CKPT,
    CheckpointError,
    Imported,
    load_mapped,
    local_source,
    map_state_dict,
    num_parameters,
    refuse_existing,
)
from genomics.jobs.modules import norm_summary
from genomics.jobs.specs import build_model
from genomics.jobs.pretrain import CONFIGS as PRETRAIN_CONFIGS
from genomics.jobs.pretrain import PretrainDataConfig
from genomics.models.caduceus import CaduceusConfig
from genomics.models.hyena import HyenaDNAConfig
from genomics.pretrained import caduceus_keys, hyena_keys
from genomics.pretrained.layouts import (
    CONFIG_JSON,
    HYENA_HF,
    HYENA_ORIGINAL,
    checkpoint_folder,
    detect_layout,
    load_weights,
    read_config,
    weights_path,
)

CALIBRATION_SEQUENCES = 8
CALIBRATION_LENGTH = 1024


def detect(src: str | Path) -> str | None:
    """The layout of ``src`` (a folder, one of its files, or ``hf:REPO_ID``), or None."""
    if str(src).startswith("fairseq2:"):
        return None
    folder = checkpoint_folder(local_source(src))
    return None if folder is None else detect_layout(folder)


def read_pretrained(src: str | Path, trust_pickle: bool = False) -> Imported:
    """Our model with the published weights of ``src``, loaded strictly (eval mode)."""
    path = local_source(src)
    folder = checkpoint_folder(path)
    if folder is None:
        raise CheckpointError(f"{path}: not a file of a HyenaDNA or Caduceus folder (pass the folder)")
    layout = detect_layout(folder)
    if layout is None:
        raise CheckpointError(f"{folder / CONFIG_JSON}: not a HyenaDNA or Caduceus config.json (no model_type "
                              f"hyenadna/caduceus, no hyena 'layer' section)" if (folder / CONFIG_JSON).is_file()
                              else f"{folder}: no config.json, so no HyenaDNA or Caduceus layout")
    config_path, raw = folder / CONFIG_JSON, read_config(folder)
    weights = weights_path(folder, layout)
    theirs = load_weights(weights, trust_pickle)
    if layout in (HYENA_HF, HYENA_ORIGINAL):
        original = layout == HYENA_ORIGINAL
        model_cfg, notes = (hyena_keys.config_from_original if original else hyena_keys.config_from_hf)(raw, config_path)
        keymap = hyena_keys.keymap(original, raw)
        copies = hyena_keys.ORIGINAL_COPIES if original else (hyena_keys.HF_TIED_COPIES if model_cfg.tie_lm_head else {})
        ignore = hyena_keys.ORIGINAL_IGNORE if original else []
    else:
        model_cfg, notes = caduceus_keys.config_from_json(raw, config_path)
        caduceus_keys.check_complement(theirs, weights)
        keymap = caduceus_keys.keymap(model_cfg.rcps, bool(raw.get("fused_add_norm", True)))
        copies, ignore = caduceus_keys.copies(model_cfg.rcps), caduceus_keys.IGNORE
    mapped = map_state_dict(theirs, keymap, weights, copies=copies, ignore=ignore)
    model = build_model(model_cfg)
    load_mapped(model, mapped, weights, config_path)
    info = {"layout": layout, "files": {"config": str(config_path), "weights": str(weights)},
            "num_parameters": num_parameters(model), "key_map": keymap.table(), **mapped.report(), "notes": notes}
    return Imported(layout, model_cfg, model.eval(), info)


def calibration_batch(data_dir: Path, model_cfg: HyenaDNAConfig | CaduceusConfig) -> Tensor:
    """Token ids for ``--alpha-init fit``: the first training sequences of a prepared
    GenomicBenchmarks task, or windows spread over a prepared genome's train split."""
    from genomics.data.gb import LABELS, GBTask
    from genomics.data.pretrain import HyenaPretrainDataset

    longest = model_cfg.l_max if isinstance(model_cfg, HyenaDNAConfig) else CALIBRATION_LENGTH
    if (data_dir / LABELS).is_file():
        ids = GBTask.load(data_dir).split("train")[0][:CALIBRATION_SEQUENCES]
        return ids[:, -longest:]  # left-padded: keep the sequence end
    windows = HyenaPretrainDataset(data_dir, "train", min(CALIBRATION_LENGTH, longest))
    picks = torch.linspace(0, len(windows) - 1, min(len(windows), CALIBRATION_SEQUENCES)).round().long()
    return torch.stack([windows[int(i)]["input_ids"] for i in picks])


def _calibration(model_cfg: HyenaDNAConfig | CaduceusConfig, data_dir: Path) -> Callable[[nn.Module], Tensor]:
    batch = calibration_batch(data_dir, model_cfg)

    def forward(model: nn.Module) -> Tensor:
        return model(batch)

    return forward


def load_pretrained(src: str | Path, norm: str | None = None, alpha_init: float = 0.5, *,
                    trust_pickle: bool = False) -> nn.Module:
    """``src``'s model (eval): ``model(input_ids)`` -> logits (B, L, V); ``norm="dyt"``: DyT, alpha0 ``alpha_init``."""
    imported = read_pretrained(src, trust_pickle)
    imported.convert(norm, alpha_init, build_model)
    return imported.model.eval()


def _job_config(cfg: HyenaDNAConfig | CaduceusConfig, init: Path) -> dict:
    if isinstance(cfg, HyenaDNAConfig):
        data = PretrainDataConfig(max_length=min(CALIBRATION_LENGTH, cfg.l_max - 2))
        return to_dict(PRETRAIN_CONFIGS["hyenadna_pretrain"](model=cfg, data=data, init_checkpoint=str(init)))
    return to_dict(PRETRAIN_CONFIGS["caduceus_pretrain"](model=cfg, init_checkpoint=str(init)))


def import_checkpoint(src: str | Path, out: str | Path, *, norm: str | None = None, alpha_init: float | str = 0.5,
                      calibrate: str | Path | None = None, trust_pickle: bool = False) -> dict:
    """Write RUN_DIR ``out`` from the published checkpoint ``src``; returns import.json's contents."""
    out = Path(out)
    refuse_existing(out)
    imported = read_pretrained(src, trust_pickle)
    forward = _calibration(imported.model_cfg, Path(calibrate)) if calibrate is not None else None
    conversion = imported.convert(norm, alpha_init, build_model, forward)
    info = imported.write(src, out, _job_config(imported.model_cfg, out.resolve() / LAST_CKPT), conversion)
    print(f"{imported.layout}: {norm_summary(imported.model)}")
    print(f"run directory: {out}")
    return info
