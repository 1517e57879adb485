"""HyenaDNA's two published layouts: config.json <-> :class:`HyenaDNAConfig`, and the key maps.

Both layouts name the block internals as we do (``layers.N.{norm1,mixer,norm2,mlp}``, the filter's
``implicit_filter.{0..6}``, ``pos_emb.{z,t}``, ``modulation.deltas``); only the embedding, the
final norm and the prefixes differ. The reference for both is the code published with the
checkpoints (``standalone_hyenadna.py``; the Hub port ``modeling_hyena.py``): the modulation window
is ``exp(-t|delta|) + shift`` with ``shift = 0.05`` (the original layout may set ``layer.shift``),
and ``z``, ``t``, ``deltas`` are the checkpoint's own buffers.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from bio_speech_dyt.pretrained import CheckpointError, KeyMap
from genomics.models.hyena import HyenaDNAConfig
from genomics.tokenizer import VOCAB_SIZE

PUBLISHED_SHIFT = 0.05  # ExponentialModulation's default in standalone_hyenadna.py and modeling_hyena.py
HF_BLOCK_NORM_EPS = 1e-5  # the -hf port builds norm1/norm2 as nn.LayerNorm(d_model): the default eps

# torch.save keeps every name of a shared tensor; the -hf safetensors files keep the first only
ORIGINAL_COPIES = {"model.lm_head.weight": "embedding.weight"}  # the original layout ties its LM head
HF_TIED_COPIES = {"lm_head.weight": "embedding.weight"}  # -hf with tie_word_embeddings: true
ORIGINAL_IGNORE = [(r"^(?!model\.)", "Lightning task state outside the model (not LM weights)")]


def keymap(layout_original: bool, cfg: dict[str, Any] | None = None) -> KeyMap:
    """``(ours, theirs)`` prefixes. The original layout's ``checkpoint_mixer`` / ``checkpoint_mlp``
    (gradient checkpointing) wrap the mixer / MLP in a ``.layer``, as hyena-dna's own loader knows."""
    if not layout_original:
        return KeyMap([("embedding.", "hyena.backbone.embeddings.word_embeddings."), ("norm_f.", "hyena.backbone.ln_f."),
                       ("layers.", "hyena.backbone.layers."), ("lm_head.", "lm_head.")])
    cfg = cfg or {}
    wrapped = [(f"layers.*.{part}.", f"model.backbone.layers.*.{part}.layer.")
               for part, flag in (("mixer", "checkpoint_mixer"), ("mlp", "checkpoint_mlp")) if cfg.get(flag)]
    return KeyMap([("embedding.", "model.backbone.embeddings.word_embeddings."), ("norm_f.", "model.backbone.ln_f."),
                   *wrapped, ("layers.", "model.backbone.layers.")])


def _need(cfg: dict, key: str, path: Path) -> Any:
    if key not in cfg:
        raise CheckpointError(f"{path}: no {key!r}")
    return cfg[key]


def _require(ok: bool, path: Path, what: str) -> None:
    if not ok:
        raise CheckpointError(f"{path}: {what} is not supported (the published HyenaDNA models do not use it)")


def _common(cfg: dict, path: Path) -> dict[str, Any]:
    d_model = int(_need(cfg, "d_model", path))
    vocab = int(_need(cfg, "vocab_size", path))
    _require(vocab == VOCAB_SIZE, path, f"vocab_size {vocab} (our tokenizer has {VOCAB_SIZE} tokens)")
    return dict(d_model=d_model, n_layer=int(_need(cfg, "n_layer", path)), d_inner=int(cfg.get("d_inner") or 4 * d_model),
                vocab_size=vocab, embed_dropout=float(cfg.get("embed_dropout", 0.1)),
                filter_pos_from_checkpoint=True)


def config_from_hf(cfg: dict, path: Path) -> tuple[HyenaDNAConfig, list[str]]:
    """The ``-hf`` port's ``HyenaConfig`` fields (its class defaults where config.json is silent)."""
    _require(int(cfg.get("hyena_order", 2)) == 2, path, "hyena_order other than 2")
    _require(int(cfg.get("short_filter_order", 3)) == 3, path, "short_filter_order other than 3 (the port pads by 2)")
    _require(bool(cfg.get("train_freq", True)), path, "train_freq: false")
    eps = float(cfg.get("layer_norm_epsilon", 1e-5))
    _require(eps == HF_BLOCK_NORM_EPS, path, f"layer_norm_epsilon {eps} (the port's block norms keep 1e-5)")
    notes = [f"{k} {cfg[k]} ignored (train-time dropout inside the operator, not in our model)"
             for k in ("hyena_dropout", "hyena_filter_dropout") if cfg.get(k)]
    model = HyenaDNAConfig(
        **_common(cfg, path), pad_vocab_size_multiple=int(cfg.get("pad_vocab_size_multiple", 8)),
        l_max=int(_need(cfg, "max_seq_len", path)), filter_order=int(cfg.get("filter_order", 64)),
        emb_dim=int(cfg.get("emb_dim", 3)), filter_w=float(cfg.get("activation_freq", 1)),
        num_inner_mlps=int(cfg.get("num_inner_mlps", 2)), resid_dropout=0.0, norm_eps=eps,
        initializer_range=float(cfg.get("initializer_range", 0.02)), modulation_shift=PUBLISHED_SHIFT,
        tie_lm_head=bool(cfg.get("tie_word_embeddings", True)))
    return model, notes


def config_from_original(cfg: dict, path: Path) -> tuple[HyenaDNAConfig, list[str]]:
    """``HyenaDNAModel(**config)`` of standalone_hyenadna.py: top-level backbone fields and the
    ``layer`` section passed to ``HyenaOperator`` / ``HyenaFilter`` / ``ExponentialModulation``."""
    layer = cfg["layer"]
    _require(not cfg.get("attn_layer_idx"), path, "attention layers (attn_layer_idx)")
    _require(int(layer.get("order", 2)) >= 2, path, "order below 2")
    _require(bool(layer.get("modulate", True)), path, "layer.modulate: false")
    local = int(layer.get("local_order", layer.get("short_filter_order", 3)))
    _require(local == 3, path, f"a short filter of order {local} (standalone_hyenadna.py fixes 3)")
    notes = [f"layer.{k} {layer[k]} ignored (optimizer setting)" for k in ("lr", "wd", "lr_pos_emb") if k in layer]
    initializer = cfg.get("initializer_cfg") or {}
    model = HyenaDNAConfig(
        **_common(cfg, path), pad_vocab_size_multiple=int(cfg.get("pad_vocab_size_multiple", 1)),
        l_max=int(_need(layer, "l_max", path)), order=int(layer.get("order", 2)),
        filter_order=int(layer.get("filter_order", 64)), emb_dim=int(layer.get("emb_dim", 3)),
        filter_w=float(layer.get("w", 1)), num_inner_mlps=int(layer.get("num_inner_mlps", 2)),
        resid_dropout=float(cfg.get("resid_dropout", 0.0)), norm_eps=float(cfg.get("layer_norm_epsilon", 1e-5)),
        initializer_range=float(initializer.get("initializer_range", 0.02)),
        modulation_shift=float(layer.get("shift", PUBLISHED_SHIFT)), tie_lm_head=True)
    return model, notes


def _exportable(model: HyenaDNAConfig, layout: str) -> None:
    """What the layout can represent (export refuses the rest)."""
    if model.norm != "layernorm":
        raise ValueError(f"HyenaDNA's Hub layouts hold LayerNorm models; this run has norm {model.norm!r}")
    if model.embed_scale != 1.0:
        raise ValueError(f"embed_scale {model.embed_scale} has no place in the {layout} layout")
    if layout == "hyenadna-hf":
        if model.modulation_shift != PUBLISHED_SHIFT:
            raise ValueError(f"the -hf port fixes the modulation shift at {PUBLISHED_SHIFT}; this run has "
                             f"{model.modulation_shift} (export --format hyenadna-original carries it)")
        if model.order != 2 or model.short_filter_order != 3 or model.norm_eps != HF_BLOCK_NORM_EPS:
            raise ValueError("the -hf port fixes order 2, a short filter of 3 and norm eps 1e-5")
    elif not model.tie_lm_head:
        raise ValueError("the original layout ties its LM head to the embedding; this run's head is untied")


def hf_config_json(model: HyenaDNAConfig) -> dict[str, Any]:
    _exportable(model, "hyenadna-hf")
    return {"model_type": "hyenadna", "architectures": ["HyenaDNAForCausalLM"], "d_model": model.d_model,
            "n_layer": model.n_layer, "d_inner": model.d_inner, "vocab_size": model.vocab_size,
            "pad_vocab_size_multiple": model.pad_vocab_size_multiple, "max_seq_len": model.l_max,
            "hyena_order": model.order, "filter_order": model.filter_order, "short_filter_order": 3,
            "emb_dim": model.emb_dim, "activation_freq": model.filter_w, "num_inner_mlps": model.num_inner_mlps,
            "train_freq": True, "use_bias": True, "embed_dropout": model.embed_dropout, "hyena_dropout": 0.0,
            "hyena_filter_dropout": 0.0, "layer_norm_epsilon": model.norm_eps,
            "initializer_range": model.initializer_range, "tie_word_embeddings": model.tie_lm_head}


def original_config_json(model: HyenaDNAConfig) -> dict[str, Any]:
    _exportable(model, "hyenadna-original")
    return {"d_model": model.d_model, "n_layer": model.n_layer, "d_inner": model.d_inner, "vocab_size": model.vocab_size,
            "resid_dropout": model.resid_dropout, "embed_dropout": model.embed_dropout,
            "layer_norm_epsilon": model.norm_eps, "residual_in_fp32": True,
            "pad_vocab_size_multiple": model.pad_vocab_size_multiple,
            "initializer_cfg": {"initializer_range": model.initializer_range},
            "layer": {"_name_": "hyena", "l_max": model.l_max, "order": model.order, "emb_dim": model.emb_dim,
                      "filter_order": model.filter_order, "local_order": 3, "num_inner_mlps": model.num_inner_mlps,
                      "w": model.filter_w, "modulate": True, "shift": model.modulation_shift, "lr_pos_emb": 0.0}}


def as_imported(model: HyenaDNAConfig) -> HyenaDNAConfig:
    """A run's model config as an import of its export reads it back (buffers from the checkpoint)."""
    return dataclasses.replace(model, filter_pos_from_checkpoint=True)
