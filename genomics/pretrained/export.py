"""``bsd export RUN_DIR --format hf --out DIR``: a LayerNorm/RMSNorm HyenaDNA or Caduceus run in a
published Hub layout, so that importing the export gives bitwise the same weights.

``--format hf`` writes the layout the run was imported from (its ``import.json``); a run of ours
(``bsd pretrain``) goes to ``hyenadna-original`` (tied head; its config.json carries the
modulation shift, 0 for our runs, which the ``-hf`` port cannot) or ``caduceus-ph`` / ``-ps``.
A layout name (``hyenadna-hf``, ``hyenadna-original``, ``caduceus-ph``, ``caduceus-ps``) picks one.
Shared tensors are written once in safetensors files; ``weights.ckpt`` keeps every name, as a
``torch.save`` of the original model does.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from torch import Tensor, nn

from bio_speech_dyt.config import load_config
from bio_speech_dyt.io import atomic_path, write_json
from bio_speech_dyt.pretrained import IMPORT_JSON, LAST_CKPT, CheckpointNotFoundError, KeyMap, staged_dir
from bio_speech_dyt.checkpoints import load_weights
from genomics.jobs.specs import build_model
from genomics.jobs.pretrain import CONFIGS
from genomics.models.caduceus import CaduceusConfig
from genomics.models.hyena import HyenaDNA, HyenaDNAConfig
from genomics.pretrained import caduceus_keys, hyena_keys
from genomics.pretrained.layouts import (
    CADUCEUS_PH,
    CADUCEUS_PS,
    CONFIG_JSON,
    HF_WEIGHTS,
    HYENA_HF,
    HYENA_ORIGINAL,
    LAYOUTS,
    ORIGINAL_WEIGHTS,
)

FORMATS = ("hf", *LAYOUTS)


def _layout(fmt: str, run_dir: Path, cfg: HyenaDNAConfig | CaduceusConfig) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    hyena = isinstance(cfg, HyenaDNAConfig)
    if fmt == "hf":
        record = run_dir / IMPORT_JSON
        if record.is_file():
            return json.loads(record.read_text())["layout"]
        return HYENA_ORIGINAL if hyena else (CADUCEUS_PS if cfg.rcps else CADUCEUS_PH)
    fits = fmt in (HYENA_HF, HYENA_ORIGINAL) if hyena else fmt == (CADUCEUS_PS if cfg.rcps else CADUCEUS_PH)
    if not fits:
        raise ValueError(f"{run_dir}: a {'HyenaDNA' if hyena else 'Caduceus'} run has no {fmt} layout")
    return fmt


def _with_filter_buffers(model: HyenaDNA) -> HyenaDNA:
    """The same model with ``z``, ``t``, ``deltas`` in its state dict (a run of ours recomputes them)."""
    if model.cfg.filter_pos_from_checkpoint:
        return model
    twin = HyenaDNA(dataclasses.replace(model.cfg, filter_pos_from_checkpoint=True))
    missing, unexpected = twin.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and all(k.rsplit(".", 1)[-1] in ("z", "t", "deltas") for k in missing), (missing, unexpected)
    return twin


def published_state(model: nn.Module, keymap: KeyMap, keep_aliases: bool) -> dict[str, Tensor]:
    """Our state dict under the layout's names; a tensor shared in the model is written under its
    first name only unless ``keep_aliases``."""
    state = model.state_dict(keep_vars=True)
    first: dict[int, str] = {}
    out = {}
    for key, tensor in state.items():
        if not keep_aliases and first.setdefault(id(tensor), key) != key:
            continue
        out[keymap.to_theirs(key)] = tensor.detach()
    return out


def export_run(run_dir: str | Path, fmt: str, out: str | Path) -> Path:
    """Write the run's weights in a Hub layout into ``out`` (a new folder); returns ``out``."""
    run_dir, out = Path(run_dir), Path(out)
    ckpt = run_dir / LAST_CKPT
    if not ckpt.is_file():
        raise CheckpointNotFoundError(f"{run_dir}: no {LAST_CKPT} (not a run directory)")
    config = torch.load(ckpt, map_location="cpu", weights_only=True).get("hyper_parameters", {}).get("config") or {}
    if config.get("task") not in CONFIGS:
        raise ValueError(f"{ckpt}: export takes HyenaDNA/Caduceus pretraining runs, not task {config.get('task')!r}")
    cfg = load_config(CONFIGS[config["task"]], data=config).model
    layout = _layout(fmt, run_dir, cfg)
    model = build_model(cfg)
    load_weights(model, ckpt)
    if isinstance(cfg, HyenaDNAConfig):
        original = layout == HYENA_ORIGINAL
        config_json = (hyena_keys.original_config_json if original else hyena_keys.hf_config_json)(cfg)
        state = published_state(_with_filter_buffers(model), hyena_keys.keymap(original), keep_aliases=original)
        if original:
            state.update({theirs: state[hyena_keys.keymap(True).to_theirs(ours)]
                          for theirs, ours in hyena_keys.ORIGINAL_COPIES.items()})
    else:
        config_json = caduceus_keys.config_json(cfg)
        keymap = caduceus_keys.keymap(cfg.rcps, config_json["fused_add_norm"])
        state = {**published_state(model, keymap, keep_aliases=False), **caduceus_keys.complement_buffers(cfg)}
    with staged_dir(out) as stage:
        write_json(stage / CONFIG_JSON, config_json)
        if layout == HYENA_ORIGINAL:
            with atomic_path(stage / ORIGINAL_WEIGHTS) as tmp:
                torch.save({"state_dict": state}, tmp)
        else:
            from safetensors.torch import save_file

            with atomic_path(stage / HF_WEIGHTS[0]) as tmp:
                save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    print(f"{layout} layout written to {out}")
    return out

