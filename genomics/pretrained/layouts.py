"""Which published layout a folder holds, read from its ``config.json``, and its weights file.

- ``hyenadna-hf``: the Hub port (``LongSafari/hyenadna-*-seqlen-hf``): ``model_type: hyenadna``,
  ``model.safetensors`` or ``pytorch_model.bin``, keys under ``hyena.backbone.`` + ``lm_head.weight``;
- ``hyenadna-original``: ``LongSafari/hyenadna-*-seqlen``: a ``layer`` section, ``weights.ckpt``
  (a Lightning checkpoint, keys under ``model.backbone.``);
- ``caduceus-ph`` / ``caduceus-ps``: ``kuleshov-group/caduceus-*``: ``model_type: caduceus``
  (``rcps`` tells PS), ``model.safetensors`` or ``pytorch_model.bin``, keys under ``caduceus.backbone.``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import Tensor

from bio_speech_dyt.pretrained import CheckpointError, first_file, load_safetensors, load_torch_file

HYENA_HF, HYENA_ORIGINAL, CADUCEUS_PH, CADUCEUS_PS = "hyenadna-hf", "hyenadna-original", "caduceus-ph", "caduceus-ps"
LAYOUTS = (HYENA_HF, HYENA_ORIGINAL, CADUCEUS_PH, CADUCEUS_PS)
CONFIG_JSON = "config.json"
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # safetensors preferred
ORIGINAL_WEIGHTS = "weights.ckpt"


def checkpoint_folder(path: Path) -> Path | None:
    """A layout is a folder; a path to one of its files stands for the folder (other files: None)."""
    if not path.is_file():
        return path
    return path.parent if path.name in (CONFIG_JSON, *HF_WEIGHTS, ORIGINAL_WEIGHTS) else None


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_JSON
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(cfg).__name__}")
    return cfg


def detect_layout(folder: Path) -> str | None:
    """The layout of ``folder`` from its config.json, or None when it has none we know."""
    if not (folder / CONFIG_JSON).is_file():
        return None
    cfg = read_config(folder)
    if cfg.get("model_type") == "caduceus":
        return CADUCEUS_PS if cfg.get("rcps") else CADUCEUS_PH
    if isinstance(cfg.get("layer"), dict) and cfg["layer"].get("_name_", "hyena") == "hyena":
        return HYENA_ORIGINAL
    if cfg.get("model_type") == "hyenadna":
        return HYENA_HF
    return None


def weights_path(folder: Path, layout: str) -> Path:
    if layout == HYENA_ORIGINAL:
        return first_file(folder, [ORIGINAL_WEIGHTS], f"{layout} weights")
    return first_file(folder, HF_WEIGHTS, f"{layout} weights")


def load_weights(path: Path, trust_pickle: bool) -> dict[str, Tensor]:
    """The state dict in ``path``: safetensors, a pickled state dict, or a Lightning checkpoint."""
    if path.suffix == ".safetensors":
        return load_safetensors(path)
    data = load_torch_file(path, trust_pickle)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, Tensor) for v in data.values()):
        raise CheckpointError(f"{path}: expected a state dict (or a Lightning checkpoint holding one)")
    return data
