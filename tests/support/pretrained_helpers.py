"""Published-layout checkpoints built from scratch, and the published models' forward passes
written out as plain float64 formulas.

Nothing here uses our models or key maps: the state dicts are built from the published key
names and shape formulas (standalone_hyenadna.py, the -hf port modeling_hyena.py, caduceus
modeling_caduceus.py / modeling_rcps.py, mamba_ssm's Mamba), filled with random values away
from any init, and the reference forwards read those dicts directly. They are the independent
side of the equality tests.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

COMPLEMENT = [0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11, 12, 13, 14, 15]  # A7<->T10, C8<->G9, padded to 16

# hyenadna-tiny-1k-seqlen: the published configs of both layouts
HYENA_ORIGINAL_CONFIG = {
    "d_model": 128, "n_layer": 2, "d_inner": 512, "vocab_size": 12, "resid_dropout": 0.0, "embed_dropout": 0.1,
    "fused_mlp": False, "fused_dropout_add_ln": True, "checkpoint_mixer": False, "checkpoint_mlp": False,
    "residual_in_fp32": True, "pad_vocab_size_multiple": 8, "return_hidden_state": True,
    "layer": {"_name_": "hyena", "emb_dim": 5, "filter_order": 64, "local_order": 3, "l_max": 1026, "modulate": True,
              "w": 10, "lr": 6e-4, "wd": 0.0, "lr_pos_emb": 0.0},
}
HYENA_HF_CONFIG = {
    "model_type": "hyenadna", "activation_freq": 10, "d_inner": 512, "d_model": 128, "emb_dim": 5, "embed_dropout": 0.1,
    "filter_order": 64, "hyena_dropout": 0.0, "hyena_filter_dropout": 0.0, "hyena_order": 2, "initializer_range": 0.02,
    "layer_norm_epsilon": 1e-05, "max_seq_len": 1026, "n_layer": 2, "num_inner_mlps": 2, "pad_vocab_size_multiple": 8,
    "short_filter_order": 3, "tie_word_embeddings": False, "train_freq": True, "use_bias": True, "vocab_size": 12,
}
# the Caduceus GB models: d_model 118, 4 layers (upstream CaduceusConfig field names)
CADUCEUS_CONFIG = {
    "model_type": "caduceus", "d_model": 118, "n_layer": 4, "vocab_size": 12, "pad_vocab_size_multiple": 8,
    "ssm_cfg": {"d_state": 16, "d_conv": 4, "expand": 2, "dt_rank": "auto", "dt_min": 0.001, "dt_max": 0.1,
                "dt_init": "random", "dt_scale": 1.0, "dt_init_floor": 1e-4, "conv_bias": True, "bias": False,
                "use_fast_path": True},
    "rms_norm": True, "residual_in_fp32": False, "fused_add_norm": True, "norm_epsilon": 1e-5,
    "initializer_cfg": {"initializer_range": 0.02, "n_residuals_per_layer": 1, "rescale_prenorm_residual": True},
    "bidirectional": True, "bidirectional_strategy": "add", "bidirectional_weight_tie": True, "rcps": False,
    "complement_map": {str(i): c for i, c in enumerate(COMPLEMENT[:12])},
}


def _padded(vocab: int, multiple: int) -> int:
    return vocab + (-vocab) % multiple


def _perturbed(shape, gen: torch.Generator, scale: float, centre: float = 0.0) -> Tensor:
    return centre + scale * torch.randn(shape, generator=gen)


# -- HyenaDNA -------------------------------------------------------------------------------------


def hyena_dims(cfg: dict, hf: bool) -> dict:
    d = cfg["d_model"]
    if hf:
        fo, e, L, w = cfg.get("filter_order", 64), cfg.get("emb_dim", 3), cfg["max_seq_len"], cfg.get("activation_freq", 1)
    else:
        layer = cfg["layer"]
        fo, e, L, w = layer.get("filter_order", 64), layer.get("emb_dim", 3), layer["l_max"], layer.get("w", 1)
    V = _padded(cfg["vocab_size"], cfg.get("pad_vocab_size_multiple", 8 if hf else 1))
    return dict(d=d, n=cfg["n_layer"], inner=cfg.get("d_inner") or 4 * d, order=2, fo=fo, e=e, L=L, w=w, V=V)


def hyena_published_state(cfg: dict, hf: bool, seed: int = 0) -> dict[str, Tensor]:
    """The published model's state dict (both layouts name the backbone alike), every name of a
    shared tensor included (the Sin frequency at .1, .3, .5 of the filter)."""
    g = torch.Generator().manual_seed(seed)
    k = hyena_dims(cfg, hf)
    d, L, e, fo, V = k["d"], k["L"], k["e"], k["fo"], k["V"]
    width, filt = d * (k["order"] + 1), d * (k["order"] - 1)
    bands = (e - 1) // 2
    t = torch.linspace(0, 1, L)[None, :, None]
    w = 2 * math.pi * torch.linspace(0, L - 1, L)[None, :, None] / L
    f = torch.linspace(1e-4, bands - 1, bands)[None, None]
    z = torch.exp(-1j * f * w)
    z = torch.cat([t, z.real, z.imag], dim=-1)
    deltas = torch.linspace(math.log(1e-2) / 1.5, math.log(1e-2) / 0.3, filt)[None, None]
    sd = {"backbone.embeddings.word_embeddings.weight": _perturbed((V, d), g, 1.0)}
    for i in range(k["n"]):
        p = f"backbone.layers.{i}."
        freq = _perturbed((1, fo), g, 0.5, k["w"])
        sd.update({
            p + "mixer.in_proj.weight": _perturbed((width, d), g, d ** -0.5), p + "mixer.in_proj.bias": _perturbed(width, g, 0.1),
            p + "mixer.out_proj.weight": _perturbed((d, d), g, d ** -0.5), p + "mixer.out_proj.bias": _perturbed(d, g, 0.1),
            p + "mixer.short_filter.weight": _perturbed((width, 1, 3), g, 0.5), p + "mixer.short_filter.bias": _perturbed(width, g, 0.1),
            p + "mixer.filter_fn.bias": _perturbed(filt, g, 1.0),
            p + "mixer.filter_fn.pos_emb.z": z + _perturbed(z.shape, g, 0.01), p + "mixer.filter_fn.pos_emb.t": t.clone(),
            p + "mixer.filter_fn.implicit_filter.0.weight": _perturbed((fo, e), g, e ** -0.5),
            p + "mixer.filter_fn.implicit_filter.0.bias": _perturbed(fo, g, 0.1),
            p + "mixer.filter_fn.implicit_filter.1.freq": freq,
            p + "mixer.filter_fn.implicit_filter.2.weight": _perturbed((fo, fo), g, fo ** -0.5),
            p + "mixer.filter_fn.implicit_filter.2.bias": _perturbed(fo, g, 0.1),
            p + "mixer.filter_fn.implicit_filter.3.freq": freq,
            p + "mixer.filter_fn.implicit_filter.4.weight": _perturbed((fo, fo), g, fo ** -0.5),
            p + "mixer.filter_fn.implicit_filter.4.bias": _perturbed(fo, g, 0.1),
            p + "mixer.filter_fn.implicit_filter.5.freq": freq,
            p + "mixer.filter_fn.implicit_filter.6.weight": _perturbed((filt, fo), g, fo ** -0.5),
            p + "mixer.filter_fn.modulation.deltas": deltas + _perturbed(deltas.shape, g, 0.05),
            p + "norm1.weight": _perturbed(d, g, 0.1, 1.0), p + "norm1.bias": _perturbed(d, g, 0.1),
            p + "norm2.weight": _perturbed(d, g, 0.1, 1.0), p + "norm2.bias": _perturbed(d, g, 0.1),
            p + "mlp.fc1.weight": _perturbed((k["inner"], d), g, d ** -0.5), p + "mlp.fc1.bias": _perturbed(k["inner"], g, 0.1),
            p + "mlp.fc2.weight": _perturbed((d, k["inner"]), g, k["inner"] ** -0.5), p + "mlp.fc2.bias": _perturbed(d, g, 0.1),
        })
    sd["backbone.ln_f.weight"], sd["backbone.ln_f.bias"] = _perturbed(d, g, 0.1, 1.0), _perturbed(d, g, 0.1)
    return sd


def write_hyena_hf(folder: Path, cfg: dict = HYENA_HF_CONFIG, seed: int = 0, fmt: str = "safetensors") -> dict[str, Tensor]:
    """A -hf folder: config.json + model.safetensors (shared tensors once: the Sin frequency at .1
    only, as HF's save_pretrained drops the others) or pytorch_model.bin. Returns the file's dict."""
    sd = {"hyena." + k: v for k, v in hyena_published_state(cfg, hf=True, seed=seed).items()}
    emb = sd["hyena.backbone.embeddings.word_embeddings.weight"]
    sd["lm_head.weight"] = emb.clone() if cfg.get("tie_word_embeddings", True) else _perturbed(emb.shape, torch.Generator().manual_seed(seed + 1), 0.5)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    if fmt == "safetensors":
        from safetensors.torch import save_file

        sd = {k: v for k, v in sd.items() if not k.endswith((".3.freq", ".5.freq"))}
        save_file(sd, str(folder / "model.safetensors"))
    else:
        torch.save(sd, folder / "pytorch_model.bin")
    return sd


def write_hyena_original(folder: Path, cfg: dict = HYENA_ORIGINAL_CONFIG, seed: int = 0, hparams: object = None) -> dict[str, Tensor]:
    """An original-layout folder: config.json + weights.ckpt, a Lightning checkpoint whose
    state_dict holds ``model.backbone.*`` and the tied ``model.lm_head.weight``."""
    sd = {"model." + k: v for k, v in hyena_published_state(cfg, hf=False, seed=seed).items()}
    sd["model.lm_head.weight"] = sd["model.backbone.embeddings.word_embeddings.weight"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    torch.save({"state_dict": sd, "epoch": 3, "global_step": 1000, "hyper_parameters": hparams or {}},
               folder / "weights.ckpt")
    return sd


def _layer_norm(x: Tensor, w: Tensor, b: Tensor | None, eps: float) -> Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    y = (x - mean) / torch.sqrt(var + eps) * w
    return y if b is None else y + b


def _causal_depthwise(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """(B, C, L) causal depthwise conv, kernel w (C, 1, K), as Conv1d(padding=K-1)[..., :L]."""
    K, L = w.shape[-1], x.shape[-1]
    y = b[None, :, None].expand_as(x).clone()
    for j in range(K):
        shift = K - 1 - j
        y[..., shift:] += w[None, :, 0, j, None] * x[..., : L - shift]
    return y


def hyena_reference_logits(sd: dict[str, Tensor], cfg: dict, hf: bool, ids: Tensor) -> Tensor:
    """standalone_hyenadna.py / modeling_hyena.py in eval mode, float64, loops for both convolutions."""
    prefix = "hyena.backbone." if hf else "model.backbone."
    k = hyena_dims(cfg, hf)
    shift = cfg.get("layer", {}).get("shift", 0.05)
    eps = cfg.get("layer_norm_epsilon", 1e-5)

    def p(name: str) -> Tensor:
        return sd[prefix + name].double()

    def operator(u: Tensor, i: int) -> Tensor:
        q = f"layers.{i}.mixer."
        seqlen, d = u.shape[1], k["d"]
        h = p(q + "filter_fn.pos_emb.z")[0, :seqlen]
        freq = p(q + "filter_fn.implicit_filter.1.freq")  # the one Sin module, shared
        for j in (0, 2, 4):
            h = torch.sin(freq * (h @ p(q + f"filter_fn.implicit_filter.{j}.weight").T + p(q + f"filter_fn.implicit_filter.{j}.bias")))
        h = h @ p(q + "filter_fn.implicit_filter.6.weight").T
        t = p(q + "filter_fn.pos_emb.t")[0, :seqlen]
        h = h * (torch.exp(-t * p(q + "filter_fn.modulation.deltas")[0].abs()) + shift)
        kernel, skip = h.T, p(q + "filter_fn.bias")  # (d, L): order 2, one filter
        x = (u @ p(q + "in_proj.weight").T + p(q + "in_proj.bias")).transpose(1, 2)
        x = _causal_depthwise(x, p(q + "short_filter.weight"), p(q + "short_filter.bias"))
        x0, x1, v = x.split(d, dim=1)
        v = v * x1
        y = v * skip[None, :, None]
        for lag in range(seqlen):
            y[..., lag:] += kernel[None, :, lag, None] * v[..., : seqlen - lag]
        return (y * x0).transpose(1, 2) @ p(q + "out_proj.weight").T + p(q + "out_proj.bias")

    h, residual = p("embeddings.word_embeddings.weight")[ids], None
    for i in range(k["n"]):
        q = f"layers.{i}."
        residual = h if residual is None else h + residual
        h = operator(_layer_norm(residual, p(q + "norm1.weight"), p(q + "norm1.bias"), eps), i)
        residual = h + residual
        u = _layer_norm(residual, p(q + "norm2.weight"), p(q + "norm2.bias"), eps)
        h = F.gelu(u @ p(q + "mlp.fc1.weight").T + p(q + "mlp.fc1.bias"), approximate="tanh") @ p(q + "mlp.fc2.weight").T + p(q + "mlp.fc2.bias")
    out = _layer_norm(h + residual, p("ln_f.weight"), p("ln_f.bias"), eps)
    head = sd["lm_head.weight"] if hf else sd["model.lm_head.weight"]
    return out @ head.double().T


# -- Caduceus -------------------------------------------------------------------------------------


def caduceus_config(rcps: bool, fused_add_norm: bool = True, **over) -> dict:
    return {**CADUCEUS_CONFIG, "rcps": rcps, "fused_add_norm": fused_add_norm, **over}


def caduceus_published_state(cfg: dict, seed: int = 0) -> dict[str, Tensor]:
    """``CaduceusForMaskedLM``'s state dict without the names HF's save_pretrained drops for shared
    tensors (the reverse Mamba's in/out projections, the tied LM head)."""
    g = torch.Generator().manual_seed(seed)
    d, ssm = cfg["d_model"], cfg["ssm_cfg"]
    di, N, K, R = ssm["expand"] * d, ssm["d_state"], ssm["d_conv"], math.ceil(d / 16)
    V = _padded(cfg["vocab_size"], cfg["pad_vocab_size_multiple"])
    rcps, fused = cfg["rcps"], cfg["fused_add_norm"]
    b = "caduceus.backbone."
    sd = {}
    if rcps:
        sd[b + "embeddings.word_embeddings.embedding.weight"] = _perturbed((V, d), g, 1.0)
        sd[b + "embeddings.word_embeddings.complement_map"] = torch.tensor(COMPLEMENT[:V])
    else:
        sd[b + "embeddings.word_embeddings.weight"] = _perturbed((V, d), g, 1.0)
    mixer, norm = ("mixer.submodule.", "norm." if fused else "norm.submodule.") if rcps else ("mixer.", "norm.")
    for i in range(cfg["n_layer"]):
        for direction in ("mamba_fwd", "mamba_rev"):
            p = f"{b}layers.{i}.{mixer}{direction}."
            if direction == "mamba_fwd":
                sd[p + "in_proj.weight"] = _perturbed((2 * di, d), g, d ** -0.5)
                sd[p + "out_proj.weight"] = _perturbed((d, di), g, di ** -0.5)
            sd.update({
                p + "conv1d.weight": _perturbed((di, 1, K), g, 0.5), p + "conv1d.bias": _perturbed(di, g, 0.1),
                p + "x_proj.weight": _perturbed((R + 2 * N, di), g, di ** -0.5),
                p + "dt_proj.weight": _perturbed((di, R), g, R ** -0.5), p + "dt_proj.bias": _perturbed(di, g, 0.5, -4.0),
                p + "A_log": torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(di, 1) + _perturbed((di, N), g, 0.1),
                p + "D": _perturbed(di, g, 0.1, 1.0),
            })
        sd[f"{b}layers.{i}.{norm}weight"] = _perturbed(d, g, 0.1, 1.0)
    sd[f"{b}norm_f.{'submodule.' if rcps and not fused else ''}weight"] = _perturbed(d, g, 0.1, 1.0)
    if rcps:
        sd["lm_head.complement_map"] = torch.tensor(COMPLEMENT[:V])
    return sd


def write_caduceus(folder: Path, cfg: dict, seed: int = 0) -> dict[str, Tensor]:
    from safetensors.torch import save_file

    sd = caduceus_published_state(cfg, seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    save_file(sd, str(folder / "model.safetensors"))
    return sd


def _rms(x: Tensor, w: Tensor, eps: float) -> Tensor:
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def _flip(x: Tensor) -> Tensor:
    return x.flip(dims=(-2, -1))


def _mamba(x: Tensor, p, d_state: int) -> Tensor:
    """mamba_ssm's Mamba, slow path: in_proj -> causal conv -> SiLU -> x_proj -> dt_proj/softplus ->
    sequential selective scan (A = -exp(A_log), skip D) gated by SiLU(z) -> out_proj."""
    xz = x @ p("in_proj.weight").T
    xs, z = xz.chunk(2, dim=-1)
    xs = F.silu(_causal_depthwise(xs.transpose(1, 2), p("conv1d.weight"), p("conv1d.bias"))).transpose(1, 2)
    rank = p("dt_proj.weight").shape[1]
    dt, Bm, Cm = (xs @ p("x_proj.weight").T).split([rank, d_state, d_state], dim=-1)
    dt = F.softplus(dt @ p("dt_proj.weight").T + p("dt_proj.bias"))
    A = -torch.exp(p("A_log"))
    h = torch.zeros(x.shape[0], xs.shape[-1], d_state, dtype=x.dtype)
    ys = []
    for t in range(x.shape[1]):
        h = torch.exp(dt[:, t, :, None] * A) * h + dt[:, t, :, None] * Bm[:, t, None, :] * xs[:, t, :, None]
        ys.append((h * Cm[:, t, None, :]).sum(-1) + p("D") * xs[:, t])
    y = torch.stack(ys, dim=1) * F.silu(z)
    return y @ p("out_proj.weight").T


def caduceus_reference_logits(sd: dict[str, Tensor], cfg: dict, ids: Tensor) -> Tensor:
    """CaduceusForMaskedLM in eval mode, float64, following upstream's code path for the config:
    for PS, RCPSEmbedding, then per block the fused add-norm (second half as the forward strand)
    or RCPSAddNormWrapper, RCPSWrapper(BiMamba), the final add-norm and RCPSLMHead."""
    b, d, eps = "caduceus.backbone.", cfg["d_model"], cfg["norm_epsilon"]
    rcps, fused, N = cfg["rcps"], cfg["fused_add_norm"], cfg["ssm_cfg"]["d_state"]
    mixer_p, norm_p = ("mixer.submodule.", "norm." if fused else "norm.submodule.") if rcps else ("mixer.", "norm.")

    def w(name: str) -> Tensor:
        return sd[name].double()

    def bimamba(x: Tensor, i: int) -> Tensor:
        fwd = f"{b}layers.{i}.{mixer_p}mamba_fwd."
        rev = f"{b}layers.{i}.{mixer_p}mamba_rev."
        tied = ("in_proj.weight", "out_proj.weight")  # bidirectional_weight_tie

        def p_rev(name: str) -> Tensor:
            return w(fwd + name) if name in tied else w(rev + name)

        return _mamba(x, lambda n: w(fwd + n), N) + _mamba(x.flip(1), p_rev, N).flip(1)

    if not rcps:
        emb = w(b + "embeddings.word_embeddings.weight")
        h, residual = emb[ids], None
        for i in range(cfg["n_layer"]):
            residual = h if residual is None else h + residual
            h = bimamba(_rms(residual, w(f"{b}layers.{i}.norm.weight"), eps), i)
        return _rms(h + residual, w(b + "norm_f.weight"), eps) @ emb.T

    emb = w(b + "embeddings.word_embeddings.embedding.weight")
    comp = sd[b + "embeddings.word_embeddings.complement_map"].long()
    h = torch.cat([emb[ids], _flip(emb[comp[ids.flip(-1)]])], dim=-1)
    residual = None
    for i in range(cfg["n_layer"]):
        nw = w(f"{b}layers.{i}.{norm_p}weight")
        s = h if residual is None else h + residual
        # upstream's fused path takes the second half as the forward strand, RCPSAddNormWrapper the first
        fwd_res, rc_res = (s[..., d:], _flip(s[..., :d])) if fused else (s[..., :d], _flip(s[..., d:]))
        h = torch.cat([_rms(fwd_res, nw, eps), _flip(_rms(rc_res, nw, eps))], dim=-1)
        residual = torch.cat([fwd_res, _flip(rc_res)], dim=-1)
        h = torch.cat([bimamba(h[..., :d], i), _flip(bimamba(_flip(h[..., d:]), i))], dim=-1)
    nf = w(f"{b}norm_f.{'' if fused else 'submodule.'}weight")
    s = h + residual
    out = torch.cat([_rms(s[..., :d], nf, eps), _flip(_rms(_flip(s[..., d:]), nf, eps))], dim=-1)
    return out[..., :d] @ emb.T + out[..., d:].flip(-1) @ emb[sd["lm_head.complement_map"].long()].T


# -- wav2vec 2.0 (fairseq) ------------------------------------------------------------------------

#: a tiny fairseq wav2vec 2.0 (fairseq's Wav2Vec2Config field names); feature dim 24 != model dim 32
#: so fairseq has a post_extract_proj; an even conv_pos exercises SamePad
FAIRSEQ_TINY = {
    "_name": "wav2vec2", "extractor_mode": "default", "encoder_layers": 2, "encoder_embed_dim": 32,
    "encoder_ffn_embed_dim": 64, "encoder_attention_heads": 4, "activation_fn": "gelu", "dropout": 0.1,
    "attention_dropout": 0.1, "activation_dropout": 0.0, "encoder_layerdrop": 0.05, "dropout_input": 0.1,
    "dropout_features": 0.1, "final_dim": 16, "layer_norm_first": False,
    "conv_feature_layers": "[(24, 10, 5)] + [(24, 3, 2)] * 2", "conv_bias": False, "logit_temp": 0.1,
    "quantize_targets": True, "quantize_input": False, "same_quantizer": False, "target_glu": False,
    "feature_grad_mult": 0.1, "quantizer_depth": 1, "quantizer_factor": 3, "latent_vars": 8, "latent_groups": 2,
    "latent_dim": 0, "mask_length": 10, "mask_prob": 0.65, "mask_channel_length": 10, "mask_channel_prob": 0.0,
    "num_negatives": 100, "negatives_from_everywhere": False, "cross_sample_negatives": 0, "codebook_negatives": 0,
    "conv_pos": 8, "conv_pos_groups": 4, "pos_conv_depth": 1, "latent_temp": [2.0, 0.5, 0.999995],
}
#: its pre-LN sibling with LayerNorm in every extractor layer and conv biases (large_lv60k's kind)
FAIRSEQ_TINY_PRE = {**FAIRSEQ_TINY, "layer_norm_first": True, "extractor_mode": "layer_norm", "conv_bias": True,
                    "latent_temp": "(2.0, 0.1, 0.999995)"}


TINY_CONV_LAYERS = [(24, 10, 5), (24, 3, 2), (24, 3, 2)]  # FAIRSEQ_TINY's conv_feature_layers


def _conv_layers(cfg: dict) -> list[tuple[int, int, int]]:
    assert cfg["conv_feature_layers"] == "[(24, 10, 5)] + [(24, 3, 2)] * 2"
    return TINY_CONV_LAYERS


def fairseq_wav2vec2_state(cfg: dict, seed: int = 0) -> dict[str, Tensor]:
    """fairseq ``Wav2Vec2Model``'s state dict (names and shapes of fairseq/models/wav2vec/wav2vec2.py)."""
    g = torch.Generator().manual_seed(seed)
    layers, D, H = _conv_layers(cfg), cfg["encoder_embed_dim"], cfg["encoder_ffn_embed_dim"]
    C, Fd, G, V = layers[-1][0], cfg["final_dim"] or D, cfg["latent_groups"], cfg["latent_vars"]
    Q, K, groups = cfg["latent_dim"] or Fd, cfg["conv_pos"], cfg["conv_pos_groups"]
    sd = {"mask_emb": torch.rand(D, generator=g)}
    channels = 1
    for i, (c, k, _) in enumerate(layers):
        p = f"feature_extractor.conv_layers.{i}."
        sd[p + "0.weight"] = _perturbed((c, channels, k), g, (channels * k) ** -0.5)
        if cfg["conv_bias"]:
            sd[p + "0.bias"] = _perturbed(c, g, 0.1)
        if cfg["extractor_mode"] == "layer_norm":
            sd[p + "2.1.weight"], sd[p + "2.1.bias"] = _perturbed(c, g, 0.1, 1.0), _perturbed(c, g, 0.1)
        elif i == 0:
            sd[p + "2.weight"], sd[p + "2.bias"] = _perturbed(c, g, 0.1, 1.0), _perturbed(c, g, 0.1)
        channels = c
    sd["layer_norm.weight"], sd["layer_norm.bias"] = _perturbed(C, g, 0.1, 1.0), _perturbed(C, g, 0.1)
    sd["post_extract_proj.weight"], sd["post_extract_proj.bias"] = _perturbed((D, C), g, C ** -0.5), _perturbed(D, g, 0.1)
    sd["quantizer.vars"] = torch.rand((1, G * V, Q // G), generator=g)
    sd["quantizer.weight_proj.weight"] = _perturbed((G * V, C), g, 1.0)
    sd["quantizer.weight_proj.bias"] = _perturbed(G * V, g, 0.1)
    sd["project_q.weight"], sd["project_q.bias"] = _perturbed((Fd, Q), g, Q ** -0.5), _perturbed(Fd, g, 0.1)
    sd["encoder.pos_conv.0.bias"] = _perturbed(D, g, 0.1)
    sd["encoder.pos_conv.0.weight_g"] = _perturbed((1, 1, K), g, 0.1, 1.0).abs()
    sd["encoder.pos_conv.0.weight_v"] = _perturbed((D, D // groups, K), g, 1.0)
    for i in range(cfg["encoder_layers"]):
        p = f"encoder.layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            sd[p + f"self_attn.{name}.weight"] = _perturbed((D, D), g, D ** -0.5)
            sd[p + f"self_attn.{name}.bias"] = _perturbed(D, g, 0.1)
        sd[p + "fc1.weight"], sd[p + "fc1.bias"] = _perturbed((H, D), g, D ** -0.5), _perturbed(H, g, 0.1)
        sd[p + "fc2.weight"], sd[p + "fc2.bias"] = _perturbed((D, H), g, H ** -0.5), _perturbed(D, g, 0.1)
        for norm in ("self_attn_layer_norm", "final_layer_norm"):
            sd[p + f"{norm}.weight"], sd[p + f"{norm}.bias"] = _perturbed(D, g, 0.1, 1.0), _perturbed(D, g, 0.1)
    sd["encoder.layer_norm.weight"], sd["encoder.layer_norm.bias"] = _perturbed(D, g, 0.1, 1.0), _perturbed(D, g, 0.1)
    sd["final_proj.weight"], sd["final_proj.bias"] = _perturbed((Fd, D), g, D ** -0.5), _perturbed(Fd, g, 0.1)
    return sd


def write_fairseq_checkpoint(path: Path, cfg: dict = FAIRSEQ_TINY, seed: int = 0, old_args: bool = False) -> dict[str, Tensor]:
    """A fairseq checkpoint: ``{"cfg": {"model": ...}, "model": state_dict, ...}`` (``old_args``: the
    pre-0.10 ``args`` Namespace instead, which only arbitrary unpickling reads)."""
    import argparse

    sd = fairseq_wav2vec2_state(cfg, seed)
    meta = {"args": argparse.Namespace(**cfg), "cfg": None} if old_args else {"args": None, "cfg": {"model": cfg}}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**meta, "model": sd, "optimizer_history": [], "extra_state": {}}, path)
    return sd


def fairseq_reference(sd: dict[str, Tensor], cfg: dict, waves: Tensor) -> dict[str, Tensor]:
    """fairseq's wav2vec 2.0 in eval mode without masking, float64: the encoder output, its final
    projection and the quantized (hard, argmax) targets of the unmasked features."""
    def w(name: str) -> Tensor:
        return sd[name].double()

    D, heads, eps = cfg["encoder_embed_dim"], cfg["encoder_attention_heads"], 1e-5
    x = waves.double()[:, None, :]
    for i, (c, k, stride) in enumerate(_conv_layers(cfg)):
        p = f"feature_extractor.conv_layers.{i}."
        x = F.conv1d(x, w(p + "0.weight"), w(p + "0.bias") if cfg["conv_bias"] else None, stride=stride)
        if cfg["extractor_mode"] == "layer_norm":
            x = _layer_norm(x.transpose(1, 2), w(p + "2.1.weight"), w(p + "2.1.bias"), eps).transpose(1, 2)
        elif i == 0:
            x = F.group_norm(x, c, w(p + "2.weight"), w(p + "2.bias"), eps)
        x = F.gelu(x)
    features = _layer_norm(x.transpose(1, 2), w("layer_norm.weight"), w("layer_norm.bias"), eps)
    x = features @ w("post_extract_proj.weight").T + w("post_extract_proj.bias")
    v, gain = w("encoder.pos_conv.0.weight_v"), w("encoder.pos_conv.0.weight_g")
    kernel = gain * v / v.pow(2).sum(dim=(0, 1), keepdim=True).sqrt()  # weight_norm(dim=2)
    size = kernel.shape[-1]
    conv = F.conv1d(x.transpose(1, 2), kernel, w("encoder.pos_conv.0.bias"), padding=size // 2, groups=cfg["conv_pos_groups"])
    if size % 2 == 0:
        conv = conv[..., :-1]  # SamePad
    x = x + F.gelu(conv).transpose(1, 2)
    pre = cfg["layer_norm_first"]

    def ln(t: Tensor, name: str) -> Tensor:
        return _layer_norm(t, w(name + ".weight"), w(name + ".bias"), eps)

    def attention(t: Tensor, p: str) -> Tensor:
        B, T, _ = t.shape
        q, k, v = (t @ w(p + f"{n}.weight").T + w(p + f"{n}.bias") for n in ("q_proj", "k_proj", "v_proj"))
        q = q * (D // heads) ** -0.5
        q, k, v = (u.view(B, T, heads, -1).transpose(1, 2) for u in (q, k, v))
        out = torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v
        return out.transpose(1, 2).reshape(B, T, D) @ w(p + "out_proj.weight").T + w(p + "out_proj.bias")

    def ffn(t: Tensor, p: str) -> Tensor:
        return F.gelu(t @ w(p + "fc1.weight").T + w(p + "fc1.bias")) @ w(p + "fc2.weight").T + w(p + "fc2.bias")

    if not pre:
        x = ln(x, "encoder.layer_norm")
    for i in range(cfg["encoder_layers"]):
        p = f"encoder.layers.{i}."
        if pre:
            x = x + attention(ln(x, p + "self_attn_layer_norm"), p + "self_attn.")
            x = x + ffn(ln(x, p + "final_layer_norm"), p)
        else:
            x = ln(x + attention(x, p + "self_attn."), p + "self_attn_layer_norm")
            x = ln(x + ffn(x, p), p + "final_layer_norm")
    if pre:
        x = ln(x, "encoder.layer_norm")
    G, V = cfg["latent_groups"], cfg["latent_vars"]
    logits = (features @ w("quantizer.weight_proj.weight").T + w("quantizer.weight_proj.bias")).unflatten(-1, (G, V))
    hard = F.one_hot(logits.argmax(-1), V).double()  # eval: the best entry per group
    codes = torch.einsum("btgv,gvd->btgd", hard, w("quantizer.vars").view(G, V, -1)).flatten(-2)
    return {"encoder": x, "final": x @ w("final_proj.weight").T + w("final_proj.bias"),
            "targets": codes @ w("project_q.weight").T + w("project_q.bias")}
