"""Caduceus (kuleshov-group/caduceus): bidirectional Mamba for DNA, optionally
reverse-complement (RC) equivariant by parameter sharing.

Blocks are pre-norm without MLP: ``residual = h + residual; h = mixer(norm(residual))``,
then a final add + norm. The mixer is a BiMamba: a Mamba over the sequence plus a Mamba over
the flipped sequence (in/out projections tied), summed.

- Caduceus-Ph (``rcps=False``): an ordinary BiMamba LM; RC symmetry comes from RC
  augmentation in pretraining and post-hoc conjoining at inference (see ``heads``).
- Caduceus-PS (``rcps=True``): hidden states have ``2 * d_model`` channels, a forward half and
  an RC half. The embedding writes ``emb(x)`` and ``RC(emb(RC(x)))``; every mixer and norm runs
  on the forward half and on the RC of the RC half with the same weights (:class:`RCPS`); the LM
  head is tied to the embedding and adds the complement-mapped logits of the RC half. Then
  ``model(RC(x)) == RC-mapped model(x)``.

The norm (native ``rmsnorm``, or ``layernorm`` / ``dyt``) sits in every block and the final
norm; a DyT replacing RMSNorm has no bias.

Published-checkpoint semantics (set by imports, defaults keep ours): ``lm_bias: false`` drops
PS's LM-head bias (upstream's ``RCPSLMHead`` has none); ``rcps_fused_add_norm: true`` computes
what upstream's fused add-norm path (``fused_add_norm: true``, the published configs) computes
for PS: each block's add+norm takes the *second* channel half as the forward strand, i.e. the
halves of the residual sum are swapped before the RC-shared norm (and stay swapped in the
residual stream); upstream's unfused path, like ours, takes the first half.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import math
from typing import Literal, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bio_speech_dyt.norms import NormKind, apply_alpha_overrides, make_norm
from genomics.models.gains import gained, scalar_gain
from genomics.models.mamba import Mamba
from genomics.tokenizer import complement_ids, padded_vocab_size


@dataclasses.dataclass
class CaduceusConfig:
    """Defaults: the 1k-context models of the Caduceus GenomicBenchmarks experiments."""

    d_model: int = 118
    n_layer: int = 4
    vocab_size: int = 12
    pad_vocab_size_multiple: int = 8
    rcps: bool = False  # True: Caduceus-PS, False: Caduceus-Ph
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    bidirectional_weight_tie: bool = True
    norm: NormKind = "rmsnorm"
    alpha_init: Union[float, dict[str, float]] = 0.5  # or per role: attention | other | final | default
    alpha_overrides: dict[str, float] = dataclasses.field(default_factory=dict)  # module path pattern -> alpha0
    # norm paths (fnmatch: ``layers.<i>.norm``, ``norm_f``) that keep the native RMSNorm under
    # ``norm: dyt``: the ablation that changes DyT back at one place only
    keep_norms: list[str] = dataclasses.field(default_factory=list)
    # ``norm: dyt`` only, an ablation beyond the paper: ``batch`` / ``token`` divide each DyT's input
    # by its RMS over the whole input / per token first (bio_speech_dyt.scaled_dyt.ScaledDyT)
    dyt_input_scale: Literal["none", "batch", "token"] = "none"
    norm_eps: float = 1e-5
    initializer_range: float = 0.02
    # a learnable scalar on the embedding's output (both strands; not the tied LM head), init
    # sqrt(d_model): the DyT paper's LLaMA recipe (see HyenaDNAConfig.embed_gain)
    embed_gain: bool = False
    lm_bias: bool = True  # PS only: a learned LM-head bias (upstream's RCPSLMHead has none)
    rcps_fused_add_norm: bool = False  # PS only: upstream's fused add-norm strand order (see module doc)

    @property
    def padded_vocab_size(self) -> int:
        return padded_vocab_size(self.vocab_size, self.pad_vocab_size_multiple)


def rc_hidden(x: Tensor) -> Tensor:
    """Reverse complement of hidden states: flip positions and channels."""
    return x.flip(dims=(-2, -1))


class BiMamba(nn.Module):
    """Mamba over the sequence + Mamba over the reversed sequence, added."""

    def __init__(self, cfg: CaduceusConfig):
        super().__init__()
        kw = dict(d_state=cfg.d_state, d_conv=cfg.d_conv, expand=cfg.expand)
        self.mamba_fwd = Mamba(cfg.d_model, **kw)
        self.mamba_rev = Mamba(cfg.d_model, **kw)
        if cfg.bidirectional_weight_tie:  # most parameters live in the projections
            self.mamba_rev.in_proj.weight = self.mamba_fwd.in_proj.weight
            self.mamba_rev.out_proj.weight = self.mamba_fwd.out_proj.weight

    def forward(self, x: Tensor) -> Tensor:
        return self.mamba_fwd(x) + self.mamba_rev(x.flip(1)).flip(1)


class RCPS(nn.Module):
    """Run ``module`` on the forward half and on the RC of the RC half (shared weights)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.submodule = module

    def forward(self, x: Tensor) -> Tensor:
        fwd, rc = x.chunk(2, dim=-1)
        return torch.cat([self.submodule(fwd), rc_hidden(self.submodule(rc_hidden(rc)))], dim=-1)


class Block(nn.Module):
    """``residual = h + residual; h = mixer(norm(residual))``; returns ``(h, residual)``. The norm's
    role is ``attention``: it feeds the sequence mixer (there is no MLP, so no ``other`` norm).
    ``swap_strands`` (``rcps_fused_add_norm``): swap the channel halves of ``residual`` first."""

    def __init__(self, cfg: CaduceusConfig, native_norm: bool = False):
        super().__init__()
        mixer, norm = BiMamba(cfg), _norm(cfg, "attention", native_norm)
        self.mixer = RCPS(mixer) if cfg.rcps else mixer
        self.norm = RCPS(norm) if cfg.rcps else norm
        self.swap_strands = cfg.rcps and cfg.rcps_fused_add_norm

    def forward(self, h: Tensor, residual: Tensor | None) -> tuple[Tensor, Tensor]:
        residual = h if residual is None else h + residual
        if self.swap_strands:
            first, second = residual.chunk(2, dim=-1)
            residual = torch.cat([second, first], dim=-1)
        return self.mixer(self.norm(residual)), residual


def _norm(cfg: CaduceusConfig, role: str, native: bool = False) -> nn.Module:
    # bias only where the norm kind has one natively (DyT replacing RMSNorm: none)
    kind = "rmsnorm" if native else cfg.norm
    if cfg.dyt_input_scale != "none" and cfg.norm != "dyt":
        raise ValueError(f"model.dyt_input_scale: {cfg.dyt_input_scale!r} needs model.norm: dyt (got {cfg.norm!r})")
    return make_norm(kind, cfg.d_model, alpha_init=cfg.alpha_init, role=role, eps=cfg.norm_eps,
                     bias=kind != "dyt", input_scale=cfg.dyt_input_scale if kind == "dyt" else "none")


def _kept_norms(cfg: CaduceusConfig) -> set[str]:
    """The norm paths ``cfg.keep_norms`` selects (none unless ``norm: dyt``); a pattern that
    matches no norm is an error, as a typo would otherwise run the unablated model."""
    paths = [f"layers.{i}.norm" for i in range(cfg.n_layer)] + ["norm_f"]
    unused = [p for p in cfg.keep_norms if not any(fnmatch.fnmatchcase(n, p) for n in paths)]
    if unused:
        raise ValueError(f"keep_norms pattern(s) {unused} match no norm; norm paths: {', '.join(paths)}")
    if cfg.norm != "dyt":
        return set()
    return {n for n in paths if any(fnmatch.fnmatchcase(n, p) for p in cfg.keep_norms)}


class Caduceus(nn.Module):
    """Masked LM. ``hidden(ids)`` -> (B, L, d_model, or 2 d_model for PS) after the final norm;
    ``forward(ids)`` -> logits (B, L, padded_vocab_size)."""

    def __init__(self, cfg: CaduceusConfig):
        super().__init__()
        self.cfg = cfg
        self.feature_dim = cfg.d_model
        self.embedding = nn.Embedding(cfg.padded_vocab_size, cfg.d_model)
        kept = _kept_norms(cfg)
        self.layers = nn.ModuleList(Block(cfg, f"layers.{i}.norm" in kept) for i in range(cfg.n_layer))
        norm_f = _norm(cfg, "final", "norm_f" in kept)
        self.norm_f = RCPS(norm_f) if cfg.rcps else norm_f
        self.lm_bias = nn.Parameter(torch.zeros(cfg.padded_vocab_size)) if cfg.rcps and cfg.lm_bias else None
        self.register_buffer("complement", complement_ids(torch.arange(cfg.padded_vocab_size)), persistent=False)
        self.embed_gain = scalar_gain(math.sqrt(cfg.d_model) if cfg.embed_gain else None)
        self.apply(self._init_weights)
        apply_alpha_overrides(self, cfg.alpha_overrides)

    def _init_weights(self, module: nn.Module) -> None:
        """mamba_ssm's scheme: default Linear init, zero biases (except dt_proj's), N(0, 0.02)
        embedding, out_proj rescaled by 1/sqrt(n_layer)."""
        if isinstance(module, nn.Linear) and module.bias is not None and not getattr(module.bias, "_no_reinit", False):
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=self.cfg.initializer_range)
        if isinstance(module, Mamba):
            nn.init.kaiming_uniform_(module.out_proj.weight, a=math.sqrt(5))
            with torch.no_grad():
                module.out_proj.weight /= math.sqrt(self.cfg.n_layer)

    def embed(self, input_ids: Tensor) -> Tensor:
        h = gained(self.embedding(input_ids), self.embed_gain)
        if not self.cfg.rcps:
            return h
        rc_ids = self.complement[input_ids].flip(-1)
        return torch.cat([h, rc_hidden(gained(self.embedding(rc_ids), self.embed_gain))], dim=-1)

    def hidden(self, input_ids: Tensor) -> Tensor:
        h, residual = self.embed(input_ids), None
        for layer in self.layers:
            h, residual = layer(h, residual)
        return self.norm_f(h if residual is None else h + residual)

    def merge_strands(self, pooled: Tensor) -> Tensor:
        """Pooled (B, hidden) -> (B, d_model): PS averages its forward half with the
        channel-flipped RC half (RC-invariant features); Ph has one strand."""
        if not self.cfg.rcps:
            return pooled
        fwd, rc = pooled.chunk(2, dim=-1)
        return (fwd + rc.flip(-1)) / 2

    def forward(self, input_ids: Tensor) -> Tensor:
        h = self.hidden(input_ids)
        w = self.embedding.weight
        if not self.cfg.rcps:
            return F.linear(h, w)
        fwd, rc = h.chunk(2, dim=-1)
        c = self.complement
        bias, bias_rc = (None, None) if self.lm_bias is None else (self.lm_bias, self.lm_bias[c])
        return F.linear(fwd, w, bias) + F.linear(rc.flip(-1), w[c], bias_rc)
