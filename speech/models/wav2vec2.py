"""fairseq2's wav2vec 2.0 with LayerNorm or DyT.

The architecture comes from fairseq2's own registry (``base``, ``large``) or from
:func:`tiny_arch` (a CPU-sized variant of ``base``); :class:`Wav2Vec2ModelConfig` fields left
at ``None`` keep the architecture's value. ``norm: dyt`` builds the fairseq2 model and swaps
every LayerNorm with :func:`bio_speech_dyt.convert.convert_norms`: the two per encoder layer,
the encoder-level one (``encoder_frontend.layer_norm`` for post-LN, ``encoder.layer_norm`` for
pre-LN), and the post-extraction feature norm ``encoder_frontend.post_extract_layer_norm``
(the one the official patch broke). The feature extractor's GroupNorm stays; with
``extractor_mode: layer_norm`` the extractor has a LayerNorm per conv layer and DyT takes
those too. ``alpha_overrides`` sets alpha0 per module path where one alpha_init does not fit
(the post-extraction norm of a small, briefly trained model: see the CPU DyT configs).

Swap counts: fairseq's Base has 26 LayerNorms (12 × 2 + post-extraction + encoder); fairseq2's
``base`` has the same 26 (its ``encoder_frontend.layer_norm`` plays the role of fairseq's
``encoder.layer_norm``, which post-LN applies before the layers). For pre-LN, fairseq moves
that norm behind the last layer; fairseq2 adds ``encoder.layer_norm`` for it, so a pre-LN model
must set ``layer_norm_features: false`` to keep fairseq's structure (Large: 24 × 2 + 2 = 50).
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import ContextManager, Literal, Union

import torch
from fairseq2.models.transformer import TransformerNormOrder
from fairseq2.models.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model, create_wav2vec2_model, register_wav2vec2_configs
from fairseq2.runtime.config_registry import get_config
from fairseq2.runtime.dependency import DependencyContainer

from bio_speech_dyt.convert import ConversionReport, convert_norms

ARCHS = ("base", "large", "tiny")
NORMS = ("layernorm", "dyt")


@dataclasses.dataclass
class Wav2Vec2ModelConfig:
    """Model section of a wav2vec 2.0 job. ``None`` keeps the architecture's value."""

    arch: str = "tiny"  # base | large (fairseq2's registry) | tiny (tiny_arch)
    norm: Literal["layernorm", "dyt"] = "layernorm"
    # alpha0, or per role {attention, other, final, default} (bio_speech_dyt.norms): attention = the
    # self-attention norms, final = the pre-LN encoder's last norm (encoder.layer_norm; a post-LN encoder
    # has none), other = the FFN norms and the frontend's (post-extraction, post-positional-conv)
    alpha_init: Union[float, dict[str, float]] = 0.5
    # DyT alpha0 per module path (fnmatch, first match wins) over alpha_init, e.g.
    # {"encoder_frontend.post_extract_layer_norm": 2.0}: a norm whose input scale is far from 1
    alpha_overrides: dict[str, float] = dataclasses.field(default_factory=dict)
    # module paths (fnmatch) that keep their LayerNorm under norm: dyt (ablations)
    keep_norms: list[str] = dataclasses.field(default_factory=list)
    # beyond the paper, an ablation: {module path (fnmatch): batch | token} makes those DyTs ScaledDyT
    # (bio_speech_dyt/scaled_dyt.py), fed their input divided by its RMS over the batch or per frame
    dyt_input_scale: dict[str, str] = dataclasses.field(default_factory=dict)
    # encoder
    model_dim: int | None = None
    num_layers: int | None = None
    num_heads: int | None = None
    ffn_dim: int | None = None
    norm_order: str | None = None  # post | pre
    layer_norm_features: bool | None = None  # encoder-level LayerNorm after the positional conv
    dropout: float | None = None
    attn_dropout: float | None = None
    ffn_dropout: float | None = None  # inside the FFN, after its activation (fairseq's activation_dropout)
    feature_dropout: float | None = None  # fairseq's dropout_input / dropout_features
    layerdrop: float | None = None
    pos_conv_kernel_size: int | None = None
    pos_conv_groups: int | None = None
    # feature extractor
    extractor_layers: list[list[int]] | None = None  # [channels, kernel, stride] per conv layer
    extractor_mode: str | None = None  # group_norm (GroupNorm in layer 0) | layer_norm (LayerNorm in every layer)
    extractor_bias: bool | None = None
    feature_grad_scale: float | None = None
    # quantizer, masking, contrastive task
    final_dim: int | None = None
    quantized_dim: int | None = None
    num_codebooks: int | None = None
    codebook_entries: int | None = None
    latent_temp: tuple[float, float, float] | None = None  # Gumbel (start, end, decay per update)
    mask_prob: float | None = None
    mask_span: int | None = None
    num_distractors: int | None = None
    logit_temp: float | None = None
    # loss weights (fairseq: 0.1 diversity, 10 feature penalty)
    diversity_weight: float = 0.1
    penalty_weight: float = 10.0
    # fairseq2's quantizer wraps one op in torch.compile on every forward: auto = CUDA only
    compile_quantizer: str = "auto"  # auto | always | never


# our field → (fairseq2 config object, attribute); "enc" is Wav2Vec2Config.encoder_config
_FIELDS = {
    "model_dim": ("enc", "model_dim"),
    "num_layers": ("enc", "num_encoder_layers"),
    "num_heads": ("enc", "num_encoder_attn_heads"),
    "ffn_dim": ("enc", "ffn_inner_dim"),
    "layer_norm_features": ("enc", "layer_norm_features"),
    "dropout": ("enc", "dropout_p"),
    "attn_dropout": ("enc", "attn_dropout_p"),
    "ffn_dropout": ("enc", "ffn_inner_dropout_p"),
    "feature_dropout": ("enc", "first_pass_dropout_p"),
    "layerdrop": ("enc", "layer_drop_p"),
    "pos_conv_kernel_size": ("enc", "pos_conv_kernel_size"),
    "pos_conv_groups": ("enc", "num_pos_conv_groups"),
    "extractor_bias": ("enc", "feature_extractor_bias"),
    "feature_grad_scale": ("enc", "feature_grad_scale"),
    "final_dim": ("top", "final_dim"),
    "quantized_dim": ("top", "quantized_dim"),
    "num_codebooks": ("top", "num_codebooks"),
    "codebook_entries": ("top", "num_codebook_entries"),
    "latent_temp": ("top", "codebook_sampling_temperature"),
    "mask_prob": ("top", "max_temporal_mask_prob"),
    "mask_span": ("top", "temporal_mask_span_len"),
    "num_distractors": ("top", "num_distractors"),
    "logit_temp": ("top", "logit_temp"),
}


def tiny_arch() -> Wav2Vec2Config:
    """``base`` shrunk for CPUs: 4 × 256 encoder (4 heads, FFN 1024), a 7-layer 256-channel
    extractor with base's kernels and strides (20 ms frames), positional conv 32 / 16 groups,
    final and quantized dims 128. ~4.4M parameters (the size the CPU recipe in docs/speech-cpu-recipe.md was
    measured with; the extractor's convolutions are most of a CPU step)."""
    cfg = fairseq2_arch("base")
    enc = cfg.encoder_config
    enc.model_dim, enc.num_encoder_layers, enc.num_encoder_attn_heads, enc.ffn_inner_dim = 256, 4, 4, 1024
    enc.feature_dim = 256
    enc.feature_extractor_layer_descs = [(256, 10, 5)] + [(256, 3, 2)] * 4 + [(256, 2, 2)] * 2
    enc.pos_conv_kernel_size, enc.num_pos_conv_groups = 32, 16
    cfg.final_dim = cfg.quantized_dim = 128
    return cfg


def fairseq2_arch(name: str) -> Wav2Vec2Config:
    """A registered fairseq2 wav2vec 2.0 architecture (``base``, ``large``, ...)."""
    container = DependencyContainer()
    register_wav2vec2_configs(container)
    return get_config(container, Wav2Vec2Config, name)


def fairseq2_config(cfg: Wav2Vec2ModelConfig) -> Wav2Vec2Config:
    """Our config → fairseq2's ``Wav2Vec2Config``."""
    if cfg.arch not in ARCHS:
        raise ValueError(f"model.arch must be one of {ARCHS}, got {cfg.arch!r}")
    out = tiny_arch() if cfg.arch == "tiny" else fairseq2_arch(cfg.arch)
    enc = out.encoder_config
    for field, (where, attr) in _FIELDS.items():
        value = getattr(cfg, field)
        if value is not None:
            setattr(enc if where == "enc" else out, attr, tuple(value) if field == "latent_temp" else value)
    if cfg.norm_order is not None:
        orders = {"post": TransformerNormOrder.POST, "pre": TransformerNormOrder.PRE}
        if cfg.norm_order not in orders:
            raise ValueError(f"model.norm_order must be post or pre, got {cfg.norm_order!r}")
        enc.norm_order = orders[cfg.norm_order]
    if cfg.extractor_layers is not None:
        enc.feature_extractor_layer_descs = [tuple(layer) for layer in cfg.extractor_layers]
        enc.feature_dim = cfg.extractor_layers[-1][0]
    if cfg.extractor_mode is not None:
        if cfg.extractor_mode not in ("group_norm", "layer_norm"):
            raise ValueError(f"model.extractor_mode must be group_norm or layer_norm, got {cfg.extractor_mode!r}")
        enc.feature_extractor_layer_norm_convs = cfg.extractor_mode == "layer_norm"
    return out


def model_config_for(arch: Wav2Vec2Config, **fields) -> Wav2Vec2ModelConfig:
    """Our config for a fairseq2 ``Wav2Vec2Config`` (an asset card's, or one rebuilt from a fairseq
    checkpoint): ``base`` with every field set. Raises ValueError naming the fairseq2 settings our
    config cannot express."""
    enc = arch.encoder_config
    values = {f: getattr(enc if where == "enc" else arch, attr) for f, (where, attr) in _FIELDS.items()}
    cfg = Wav2Vec2ModelConfig(
        arch="base", **{**values, "latent_temp": tuple(values["latent_temp"])},
        norm_order="pre" if enc.norm_order == TransformerNormOrder.PRE else "post",
        extractor_layers=[list(layer) for layer in enc.feature_extractor_layer_descs],
        extractor_mode="layer_norm" if enc.feature_extractor_layer_norm_convs else "group_norm", **fields)
    rebuilt = fairseq2_config(cfg)
    differ = []
    for prefix, ours, theirs in (("", rebuilt, arch), ("encoder_config.", rebuilt.encoder_config, enc)):
        for f in dataclasses.fields(theirs):
            if f.name != "encoder_config" and getattr(ours, f.name) != getattr(theirs, f.name):
                differ.append(f"{prefix}{f.name}={getattr(ours, f.name)!r} (needed {getattr(theirs, f.name)!r})")
    if differ:
        raise ValueError(f"our wav2vec 2.0 config cannot express fairseq2's {', '.join(differ)}")
    return cfg


def build_wav2vec2(cfg: Wav2Vec2ModelConfig) -> tuple[Wav2Vec2Model, ConversionReport | None]:
    """The fairseq2 model; with ``norm: dyt`` also the swap report (``None`` for layernorm)."""
    if cfg.norm not in NORMS:
        raise ValueError(f"model.norm must be one of {NORMS}, got {cfg.norm!r}")
    if cfg.compile_quantizer not in ("auto", "always", "never"):
        raise ValueError(f"model.compile_quantizer must be auto, always or never, got {cfg.compile_quantizer!r}")
    if cfg.dyt_input_scale and cfg.norm != "dyt":
        raise ValueError(f"model.dyt_input_scale: {cfg.dyt_input_scale!r} needs model.norm: dyt (got {cfg.norm!r})")
    model = create_wav2vec2_model(fairseq2_config(cfg))
    if cfg.norm == "layernorm":
        return model, None
    model, report = convert_norms(model, alpha_init=cfg.alpha_init, kinds=("layernorm",),
                                  exclude=cfg.keep_norms or None, alpha_overrides=cfg.alpha_overrides,
                                  input_scale=cfg.dyt_input_scale)
    return model, report


def quantizer_compile(cfg: Wav2Vec2ModelConfig, device: torch.device) -> ContextManager:
    """Context for a wav2vec 2.0 forward pass that decides about the quantizer's compile.

    fairseq2's ``GumbelWav2Vec2VectorQuantizer.forward`` defines a ``torch.compile``-decorated
    codebook sum inside every call. On CPU the first compile costs 26–43 s (and recompiles
    follow when batch shapes change) for an op that takes milliseconds eagerly, so off CUDA we
    run the forward under ``torch.compiler.set_stance("force_eager")``, torch's documented
    switch that makes compiled functions run their eager original (measured here: first
    step 6 s instead of 21 s on the tiny model; same losses). This is scoped to the forward —
    nothing is patched — and nothing else in the wav2vec 2.0 forward is compiled. On CUDA
    (``auto``) the compiled path is kept, as fairseq2 intends.
    """
    compiled = cfg.compile_quantizer == "always" or (cfg.compile_quantizer == "auto" and device.type == "cuda")
    return contextlib.nullcontext() if compiled else torch.compiler.set_stance("force_eager")
