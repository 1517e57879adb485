"""Caduceus's published layout (``kuleshov-group/caduceus-*``, ``CaduceusForMaskedLM``):
config.json <-> :class:`CaduceusConfig`, and the key maps.

Upstream wraps PS's embedding in ``RCPSEmbedding`` (``word_embeddings.embedding.weight``), its
mixers in ``RCPSWrapper`` (``mixer.submodule.``, as ours) and, on the unfused path only, its norms
in ``RCPSAddNormWrapper`` (``norm.submodule.``); the fused path (``fused_add_norm: true``) keeps
plain norms (``norm.weight``). The LM head is tied to the embedding; the reverse Mamba's in/out
projections are tied to the forward one's (``bidirectional_weight_tie``) and stored once or not at
all; ``complement_map`` buffers must equal our tokenizer's.

Semantics: upstream's fused add-norm path takes the second channel half of PS's hidden state as
the forward strand in every block; its unfused path (and our PS) the first. An import reproduces
the path its config names: ``rcps_fused_add_norm`` = ``rcps and fused_add_norm``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bio_speech_dyt.pretrained import CheckpointError, KeyMap
from genomics.models.caduceus import CaduceusConfig
from genomics.tokenizer import VOCAB_SIZE, complement_ids

BACKBONE = "caduceus.backbone."
COMPLEMENT_KEYS = (BACKBONE + "embeddings.word_embeddings.complement_map", "lm_head.complement_map")
IGNORE = [(r"complement_map$", "the RC token map (checked equal to our tokenizer's complement)")]
SSM_DEFAULTS = {"d_state": 16, "d_conv": 4, "expand": 2, "dt_rank": "auto", "bias": False, "conv_bias": True}
SSM_INIT_ONLY = ("dt_min", "dt_max", "dt_init", "dt_scale", "dt_init_floor", "use_fast_path")


def keymap(rcps: bool, fused_add_norm: bool) -> KeyMap:
    if not rcps:
        return KeyMap([("embedding.", BACKBONE + "embeddings.word_embeddings."), ("layers.", BACKBONE + "layers."),
                       ("norm_f.", BACKBONE + "norm_f.")])
    wrapped = "" if fused_add_norm else "submodule."
    return KeyMap([("embedding.", BACKBONE + "embeddings.word_embeddings.embedding."),
                   ("layers.*.norm.submodule.", BACKBONE + f"layers.*.norm.{wrapped}"),
                   ("norm_f.submodule.", BACKBONE + f"norm_f.{wrapped}"), ("layers.", BACKBONE + "layers.")])


def copies(rcps: bool) -> dict[str, str]:
    return {("lm_head.lm_head.weight" if rcps else "lm_head.weight"): "embedding.weight"}


def _require(ok: bool, path: Path, what: str) -> None:
    if not ok:
        raise CheckpointError(f"{path}: {what} is not supported (the published Caduceus models do not use it)")


def padded_complement(size: int) -> Tensor:
    return complement_ids(torch.arange(size))


def config_from_json(cfg: dict, path: Path) -> tuple[CaduceusConfig, list[str]]:
    """Upstream ``CaduceusConfig`` fields (its class defaults where config.json is silent)."""
    for key in ("d_model", "n_layer", "vocab_size"):
        if key not in cfg:
            raise CheckpointError(f"{path}: no {key!r}")
    vocab = int(cfg["vocab_size"])
    _require(vocab == VOCAB_SIZE, path, f"vocab_size {vocab} (our tokenizer has {VOCAB_SIZE} tokens)")
    _require(bool(cfg.get("bidirectional", True)), path, "bidirectional: false")
    _require((cfg.get("bidirectional_strategy") or "add") == "add", path,
             f"bidirectional_strategy {cfg.get('bidirectional_strategy')!r}")
    ssm = {**SSM_DEFAULTS, **(cfg.get("ssm_cfg") or {})}
    for key in ("dt_rank", "bias", "conv_bias"):
        _require(ssm[key] == SSM_DEFAULTS[key], path, f"ssm_cfg.{key} {ssm[key]!r}")
    unknown = set(ssm) - set(SSM_DEFAULTS) - set(SSM_INIT_ONLY)
    _require(not unknown, path, f"ssm_cfg keys {sorted(unknown)}")
    rcps, fused = bool(cfg.get("rcps", False)), bool(cfg.get("fused_add_norm", True))
    if rcps:
        theirs = cfg.get("complement_map")
        if not isinstance(theirs, dict):
            raise CheckpointError(f"{path}: rcps: true needs a complement_map")
        ours = padded_complement(len(theirs)).tolist()
        try:
            values = [int(theirs[str(i)]) for i in range(len(theirs))]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: complement_map must map the ids 0..{len(theirs) - 1}") from None
        if values != ours:
            raise CheckpointError(f"{path}: complement_map {theirs} differs from our tokenizer's {ours}")
    initializer = cfg.get("initializer_cfg") or {}
    model = CaduceusConfig(
        d_model=int(cfg["d_model"]), n_layer=int(cfg["n_layer"]), vocab_size=vocab,
        pad_vocab_size_multiple=int(cfg.get("pad_vocab_size_multiple", 8)), rcps=rcps, d_state=int(ssm["d_state"]),
        d_conv=int(ssm["d_conv"]), expand=int(ssm["expand"]),
        bidirectional_weight_tie=bool(cfg.get("bidirectional_weight_tie", True)),
        norm="rmsnorm" if cfg.get("rms_norm", True) else "layernorm", norm_eps=float(cfg.get("norm_epsilon", 1e-5)),
        initializer_range=float(initializer.get("initializer_range", 0.02)), lm_bias=False,
        rcps_fused_add_norm=rcps and fused)
    notes = []
    if rcps:
        notes.append(f"fused_add_norm: {str(fused).lower()} — imported with rcps_fused_add_norm: {str(fused).lower()}: "
                     + ("the second channel half is each block's forward strand, as upstream's fused path computes"
                        if fused else "the first channel half is the forward strand (upstream's unfused path, ours)"))
    return model, notes


def check_complement(theirs: dict[str, Tensor], path: Path) -> None:
    for key in COMPLEMENT_KEYS:
        if key in theirs and not torch.equal(theirs[key].long(), padded_complement(theirs[key].numel())):
            raise CheckpointError(f"{path}: {key} {theirs[key].tolist()} differs from our tokenizer's complement")


def config_json(model: CaduceusConfig) -> dict[str, Any]:
    """config.json of a run in upstream's layout (export)."""
    if model.norm not in ("rmsnorm", "layernorm"):
        raise ValueError(f"Caduceus's Hub layout holds RMSNorm/LayerNorm models; this run has norm {model.norm!r}")
    if model.rcps and model.lm_bias:
        raise ValueError("this PS run's LM head has a bias (lm_bias), which upstream's RCPSLMHead lacks")
    out = {"model_type": "caduceus", "architectures": ["CaduceusForMaskedLM"], "d_model": model.d_model,
           "n_layer": model.n_layer, "vocab_size": model.vocab_size, "pad_vocab_size_multiple": model.pad_vocab_size_multiple,
           "ssm_cfg": {**SSM_DEFAULTS, "d_state": model.d_state, "d_conv": model.d_conv, "expand": model.expand},
           "rms_norm": model.norm == "rmsnorm", "residual_in_fp32": True,
           "fused_add_norm": model.rcps_fused_add_norm if model.rcps else True, "norm_epsilon": model.norm_eps,
           "initializer_cfg": {"initializer_range": model.initializer_range}, "bidirectional": True,
           "bidirectional_strategy": "add", "bidirectional_weight_tie": model.bidirectional_weight_tie,
           "rcps": model.rcps}
    if model.rcps:
        out["complement_map"] = {str(i): int(c) for i, c in enumerate(padded_complement(model.vocab_size).tolist())}
    return out


def complement_buffers(model: CaduceusConfig) -> dict[str, Tensor]:
    """PS's RCPS embedding and LM head keep the complement map as persistent buffers."""
    if not model.rcps:
        return {}
    c = padded_complement(model.padded_vocab_size)
    return {key: c.clone() for key in COMPLEMENT_KEYS}
