"""wav2vec 2.0 (fairseq2) with LayerNorm / DyT: swap counts, loss, one step, fixed-seed validation."""
from __future__ import annotations

import math

import pytest
import torch
from fairseq2.nn import LayerNorm as Fs2LayerNorm
from fairseq2.nn import StandardLayerNorm
from tests.support.speech_helpers import MICRO_MODEL

from bio_speech_dyt.dyt import DyT
from bio_speech_dyt.scaled_dyt import ScaledDyT
from speech.loss import count_correct, eval_loss, forward_loss
from speech.models.wav2vec2 import Wav2Vec2ModelConfig, build_wav2vec2, fairseq2_config


def _swaps(**fields) -> tuple[list[str], list[str]]:
    """Swapped and kept norm paths; built on the meta device (no memory, no init time)."""
    with torch.device("meta"):
        _, report = build_wav2vec2(Wav2Vec2ModelConfig(norm="dyt", **fields))
    return [r.path for r in report], report.kept


def test_base_swaps_26_like_fairseq():
    swapped, kept = _swaps(arch="base")
    assert len(swapped) == 26
    assert "encoder_frontend.post_extract_layer_norm" in swapped  # the norm the official patch broke
    assert "encoder_frontend.layer_norm" in swapped  # fairseq's encoder.layer_norm (post-LN: before the layers)
    assert sum(".self_attn_layer_norm" in p or ".ffn_layer_norm" in p for p in swapped) == 24
    assert kept == ["encoder_frontend.feature_extractor.layers.0.group_norm (Float32GroupNorm)"]


def test_large_swap_counts():
    # the DyT authors' Large: pre-LN, group-norm extractor, fairseq structure (final encoder norm)
    swapped, _ = _swaps(arch="large", norm_order="pre", layer_norm_features=False)
    assert len(swapped) == 50 and "encoder.layer_norm" in swapped
    # fairseq2's large with pre-LN but its frontend norm kept has one more norm than fairseq
    assert len(_swaps(arch="large", norm_order="pre")[0]) == 51


def test_tiny_swaps_and_layer_norm_extractor():
    swapped, kept = _swaps(arch="tiny")
    assert len(swapped) == 4 * 2 + 2 and len(kept) == 1
    swapped, kept = _swaps(arch="tiny", extractor_mode="layer_norm")
    assert len(swapped) == 10 + 7 and kept == []
    # the ablation of docs/speech-cpu-recipe.md: keep the post-extraction LayerNorm, DyT elsewhere
    swapped, kept = _swaps(arch="tiny", norm_order="pre", layer_norm_features=False,
                           keep_norms=["encoder_frontend.post_extract_layer_norm"])
    assert len(swapped) == 4 * 2 + 1 and "encoder_frontend.post_extract_layer_norm (StandardLayerNorm)" in kept


def test_dyt_model_has_no_layernorm_left():
    model, report = build_wav2vec2(Wav2Vec2ModelConfig(norm="dyt", alpha_init=0.7, **MICRO_MODEL))
    norms = [m for m in model.modules() if isinstance(m, Fs2LayerNorm)]
    assert norms and all(isinstance(m, DyT) for m in norms)
    assert not any(isinstance(m, StandardLayerNorm) for m in model.modules())
    assert all(float(m.alpha) == pytest.approx(0.7) for m in norms) and len(report) == len(norms)
    ln, none = build_wav2vec2(Wav2Vec2ModelConfig(norm="layernorm", **MICRO_MODEL))
    assert none is None and not any(isinstance(m, DyT) for m in ln.modules())


def test_alpha_overrides_set_one_norm():
    post = "encoder_frontend.post_extract_layer_norm"
    model, report = build_wav2vec2(Wav2Vec2ModelConfig(norm="dyt", alpha_overrides={post: 10.0}, **MICRO_MODEL))
    alphas = {r.path: r.alpha_init for r in report}
    assert alphas.pop(post) == 10.0 and float(model.get_submodule(post).alpha) == pytest.approx(10.0)
    assert alphas and set(alphas.values()) == {0.5}


def test_dyt_input_scale_makes_one_norm_scaled_dyt():
    post = "encoder_frontend.post_extract_layer_norm"
    model, report = build_wav2vec2(Wav2Vec2ModelConfig(norm="dyt", dyt_input_scale={post: "token"}, **MICRO_MODEL))
    scaled = [n for n, m in model.named_modules() if isinstance(m, ScaledDyT)]
    norm = model.get_submodule(post)
    assert scaled == [post] and norm.scope == "token" and isinstance(norm, Fs2LayerNorm)
    assert {r.path: r.input_scale for r in report if r.input_scale} == {post: "token"}
    # per frame: the output of a frame does not depend on that frame's energy
    x = torch.randn(2, 5, norm.normalized_shape[0])
    y = norm(x * torch.tensor([0.3, 1.0, 50.0, 3.0, 0.5]).view(1, 5, 1))
    torch.testing.assert_close(y, norm(x), rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match=r"input_scale pattern 'encoder.nope' matches none of the swapped norms"):
        build_wav2vec2(Wav2Vec2ModelConfig(norm="dyt", dyt_input_scale={"encoder.nope": "batch"}, **MICRO_MODEL))
    with pytest.raises(ValueError, match=r"scope 'frame', choose one of \('batch', 'token'\)"):
        build_wav2vec2(Wav2Vec2ModelConfig(norm="dyt", dyt_input_scale={post: "frame"}, **MICRO_MODEL))
    with pytest.raises(ValueError, match="model.dyt_input_scale: .* needs model.norm: dyt"):
        build_wav2vec2(Wav2Vec2ModelConfig(norm="layernorm", dyt_input_scale={post: "batch"}, **MICRO_MODEL))


def test_config_overrides_reach_fairseq2():
    cfg = fairseq2_config(Wav2Vec2ModelConfig(arch="base", codebook_entries=32, latent_temp=(2.0, 0.5, 0.997),
                                              num_distractors=10, mask_span=5, norm_order="pre"))
    assert (cfg.num_codebook_entries, cfg.codebook_sampling_temperature, cfg.num_distractors) == (32, (2.0, 0.5, 0.997), 10)
    assert cfg.temporal_mask_span_len == 5 and cfg.encoder_config.norm_order.name == "PRE"
    with pytest.raises(ValueError, match="arch"):
        fairseq2_config(Wav2Vec2ModelConfig(arch="huge"))


def _batch(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(16000) / 16000
    return (0.3 * torch.sin(2 * math.pi * 120 * t * (1 + torch.rand(4, 1, generator=g)))
            + 0.05 * torch.randn(4, 16000, generator=g))


@pytest.mark.parametrize("norm", ["layernorm", "dyt"])
def test_loss_finite_and_one_step_lowers_it(norm):
    torch.manual_seed(0)
    cfg = Wav2Vec2ModelConfig(norm=norm, dropout=0.0, attn_dropout=0.0, feature_dropout=0.0, layerdrop=0.0,
                              **MICRO_MODEL)
    model, _ = build_wav2vec2(cfg)
    model.train()
    batch = _batch()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss_at_fixed_noise() -> torch.Tensor:
        model.quantizer.num_updates.zero_()  # same Gumbel temperature
        with torch.random.fork_rng():
            torch.manual_seed(7)  # same masks, distractors and Gumbel noise
            return forward_loss(model, batch, cfg)

    first = loss_at_fixed_noise()
    parts = first.parts()
    assert torch.isfinite(first.loss) and first.num_targets > 0
    assert parts["loss_bits"] == pytest.approx(parts["contrastive_bits"] + parts["diversity_bits"] + parts["penalty_bits"],
                                               rel=1e-4)
    opt.zero_grad()
    first.loss.backward()
    opt.step()
    assert float(loss_at_fixed_noise().loss) < float(first.loss)


def test_validation_is_deterministic_and_uses_no_compile():
    cfg = Wav2Vec2ModelConfig(norm="dyt", **MICRO_MODEL)
    model, _ = build_wav2vec2(cfg)
    model.eval()
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()  # global: earlier tests' compiles must not count here
    batch = _batch(1)
    a, b = eval_loss(model, batch, cfg, seed=5), eval_loss(model, batch, cfg, seed=5)
    assert float(a.loss) == float(b.loss) and a.correct == b.correct and a.num_targets == b.num_targets
    assert float(eval_loss(model, batch, cfg, seed=6).loss) != float(a.loss)  # the seed picks the masks
    assert not torch._dynamo.utils.counters["stats"]["unique_graphs"]  # the CPU forward ran eagerly


def test_count_correct():
    logits = torch.tensor([[[3.0, 1.0, 2.0], [1.0, 3.0, 2.0], [1.0, 1.0, 1.0], [2.0, -math.inf, 1.0]]])
    assert count_correct(logits) == 2


def test_dyt_without_feature_projection():
    # fairseq2's masker writes into the post-extraction norm's output in place when
    # feature_dim == model_dim (the tiny arch): the DyT kernel's output must not be a view
    cfg = Wav2Vec2ModelConfig(norm="dyt", **{**MICRO_MODEL, "model_dim": 32})  # extractor 32 = model 32
    model, _ = build_wav2vec2(cfg)
    assert model.encoder_frontend.model_dim_proj is None
    assert torch.isfinite(forward_loss(model, _batch(), cfg).loss)
