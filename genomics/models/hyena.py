"""HyenaDNA (HazyResearch/hyena-dna): a decoder-only language model over single nucleotides.

Token embedding (no positional embedding) -> ``n_layer`` pre-norm blocks
(``x + Hyena(norm1(x))``, then ``x + MLP(norm2(x))``) -> final norm -> LM head tied to the
embedding (or, ``tie_lm_head: false``, a separate one as in the ``-hf`` Hub port). Every norm
comes from :func:`bio_speech_dyt.norms.make_norm`, so ``norm="dyt"`` swaps all
``2 * n_layer + 1`` of them.

Blocks pass ``(hidden, residual)`` as hyena-dna's (flash-attention's) prenorm ``Block`` does:
dropout -> add -> norm -> mixer -> dropout -> add -> norm -> MLP, so each dropout acts on a
branch output (block 0's first one on the embedding), never on the residual stream.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Union

import torch.nn.functional as F
from torch import Tensor, nn

from bio_speech_dyt.norms import NormKind, apply_alpha_overrides, make_norm
from genomics.models.gains import gained, scalar_gain
from genomics.models.hyena_filter import HyenaFilter, fftconv
from genomics.tokenizer import padded_vocab_size


@dataclasses.dataclass
class HyenaDNAConfig:
    """Defaults: the published ``hyenadna-tiny-1k`` (436,096 parameters with LayerNorm)."""

    d_model: int = 128
    n_layer: int = 2
    d_inner: int = 512  # MLP width
    vocab_size: int = 12
    pad_vocab_size_multiple: int = 8
    l_max: int = 1026  # longest sequence the implicit filter serves
    order: int = 2  # Hyena recurrence depth (number of gates)
    filter_order: int = 64  # width of the implicit filter MLP
    emb_dim: int = 5  # positional features of the filter
    short_filter_order: int = 3
    filter_w: float = 10.0  # initial frequency of the filter's sine activation
    num_inner_mlps: int = 2
    embed_dropout: float = 0.1
    resid_dropout: float = 0.0
    norm: NormKind = "layernorm"
    alpha_init: Union[float, dict[str, float]] = 0.5  # or per role: attention | other | final | default
    alpha_overrides: dict[str, float] = dataclasses.field(default_factory=dict)  # module path pattern -> alpha0
    norm_eps: float = 1e-5
    initializer_range: float = 0.02
    embed_init_std: float | None = None  # None: initializer_range (published); see the CPU GB configs
    embed_scale: float = 1.0  # multiplies the embedding's output (not the tied LM head)
    # a learnable scalar on the embedding's output (not the tied LM head), init sqrt(d_model): the DyT
    # paper's LLaMA recipe ("without this scaling scalar ... the training struggles to progress")
    embed_gain: bool = False
    # beyond the paper: a learnable scalar on each residual branch's output, initialised to this value
    # (0: ReZero / SkipInit), so the residual stream grows only as fast as Adam moves two scalars per block
    residual_gain_init: float | None = None
    # the implicit filter's window is exp(-t|delta|) + modulation_shift: 0.0 as hyena-dna's training
    # code, 0.05 in the code published with the Hub checkpoints (imports set it)
    modulation_shift: float = 0.0
    tie_lm_head: bool = True  # False: a separate LM head (the -hf Hub layout's untied lm_head)
    # the final norm's kind (None: ``norm``): an ablation that keeps DyT in the blocks and normalizes
    # only in front of the LM head
    final_norm: NormKind | None = None
    # True: the filter's positional features z, t and modulation deltas are state-dict buffers, so a
    # checkpoint's stored values win (imports); False: recomputed from l_max and not saved
    filter_pos_from_checkpoint: bool = False

    @property
    def padded_vocab_size(self) -> int:
        return padded_vocab_size(self.vocab_size, self.pad_vocab_size_multiple)


class HyenaOperator(nn.Module):
    """Order-N Hyena: project to (N+1) streams, short causal depthwise conv, then
    ``v <- long_conv(v * x_i)`` for the gates, finally ``v * x_0`` and an output projection."""

    def __init__(self, cfg: HyenaDNAConfig):
        super().__init__()
        d, n = cfg.d_model, cfg.order
        self.d_model, self.order, self.l_max = d, n, cfg.l_max
        width = d * (n + 1)
        self.in_proj = nn.Linear(d, width)
        self.out_proj = nn.Linear(d, d)
        k = cfg.short_filter_order
        self.short_filter = nn.Conv1d(width, width, k, padding=k - 1, groups=width)
        self.filter_fn = HyenaFilter(d * (n - 1), cfg.l_max, cfg.emb_dim, cfg.filter_order, cfg.num_inner_mlps,
                                     cfg.filter_w, cfg.modulation_shift, cfg.filter_pos_from_checkpoint)

    def forward(self, u: Tensor) -> Tensor:
        seqlen = u.shape[1]
        uc = self.short_filter(self.in_proj(u).transpose(1, 2))[..., :seqlen]  # causal: keep the first L
        *gates, v = uc.split(self.d_model, dim=1)
        k = self.filter_fn.filter(seqlen).t().reshape(self.order - 1, self.d_model, seqlen)
        skip = self.filter_fn.bias.reshape(self.order - 1, self.d_model)
        for o, x_i in enumerate(reversed(gates[1:])):
            v = fftconv(v * x_i, k[o], skip[o])
        return self.out_proj((v * gates[0]).transpose(1, 2))


class Mlp(nn.Module):
    def __init__(self, d_model: int, d_inner: int):
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_inner)
        self.fc2 = nn.Linear(d_inner, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class Block(nn.Module):
    """Norm roles: ``attention`` in front of the Hyena mixer (the sequence mixer, as attention in the
    paper's LLaMA recipe), ``other`` in front of the MLP. ``residual += drop1(hidden); hidden =
    mixer(norm1(residual)); residual += drop2(hidden); hidden = mlp(norm2(residual))`` (hyena-dna's
    order); returns ``(hidden, residual)``."""

    def __init__(self, cfg: HyenaDNAConfig, dropout: float):
        super().__init__()
        norm = dict(alpha_init=cfg.alpha_init, eps=cfg.norm_eps)
        self.norm1 = make_norm(cfg.norm, cfg.d_model, role="attention", **norm)
        self.mixer = HyenaOperator(cfg)
        self.norm2 = make_norm(cfg.norm, cfg.d_model, role="other", **norm)
        self.mlp = Mlp(cfg.d_model, cfg.d_inner)
        self.drop1 = nn.Dropout(dropout)  # block 0: the embedding dropout, as in hyena-dna
        self.drop2 = nn.Dropout(cfg.resid_dropout)
        self.gain1, self.gain2 = scalar_gain(cfg.residual_gain_init), scalar_gain(cfg.residual_gain_init)

    def forward(self, hidden: Tensor, residual: Tensor | None) -> tuple[Tensor, Tensor]:
        dropped = self.drop1(hidden)
        residual = dropped if residual is None else dropped + residual
        residual = gained(self.drop2(self.mixer(self.norm1(residual))), self.gain1) + residual
        return gained(self.mlp(self.norm2(residual)), self.gain2), residual


class HyenaDNA(nn.Module):
    """Next-token model. ``hidden(ids)`` -> (B, L, d_model) after the final norm;
    ``forward(ids)`` -> logits over the padded vocabulary (B, L, padded_vocab_size)."""

    def __init__(self, cfg: HyenaDNAConfig):
        super().__init__()
        self.cfg = cfg
        self.feature_dim = cfg.d_model
        self.embedding = nn.Embedding(cfg.padded_vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(
            Block(cfg, cfg.embed_dropout if i == 0 else cfg.resid_dropout) for i in range(cfg.n_layer)
        )
        self.drop_f = nn.Dropout(cfg.resid_dropout)
        self.norm_f = make_norm(cfg.final_norm or cfg.norm, cfg.d_model, alpha_init=cfg.alpha_init, role="final",
                                eps=cfg.norm_eps)
        self.embed_gain = scalar_gain(math.sqrt(cfg.d_model) if cfg.embed_gain else None)
        self.lm_head = None if cfg.tie_lm_head else nn.Linear(cfg.d_model, cfg.padded_vocab_size, bias=False)
        self.apply(self._init_weights)
        apply_alpha_overrides(self, cfg.alpha_overrides)

    def _init_weights(self, module: nn.Module) -> None:
        """GPT-2 style: N(0, 0.02) weights (the embedding: ``embed_init_std`` when set), zero
        biases, residual output projections scaled by 1/sqrt(2 n_layer). (Applies to the filter
        MLP too, as in hyena-dna.)"""
        std = self.cfg.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            emb_std = self.cfg.embed_init_std
            use_emb_std = isinstance(module, nn.Embedding) and emb_std is not None
            nn.init.normal_(module.weight, std=emb_std if use_emb_std else std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        if isinstance(module, (HyenaOperator, Mlp)):
            out = module.out_proj if isinstance(module, HyenaOperator) else module.fc2
            nn.init.normal_(out.weight, std=std / math.sqrt(2 * self.cfg.n_layer))

    def hidden(self, input_ids: Tensor) -> Tensor:
        x = self.embedding(input_ids)
        if self.cfg.embed_scale != 1.0:
            x = x * self.cfg.embed_scale
        x = gained(x, self.embed_gain)
        residual = None
        for layer in self.layers:
            x, residual = layer(x, residual)
        x = self.drop_f(x)
        return self.norm_f(x if residual is None else x + residual)

    def merge_strands(self, pooled: Tensor) -> Tensor:
        """Pooled features -> classifier features (identity: one strand)."""
        return pooled

    def forward(self, input_ids: Tensor) -> Tensor:
        head = self.embedding if self.lm_head is None else self.lm_head
        return F.linear(self.hidden(input_ids), head.weight)
