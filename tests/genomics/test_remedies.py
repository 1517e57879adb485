"""The DyT-parity options of issue #15 on tiny models: the embedding gain, alpha0 per role (final norm
included) in all three models, and the zero-initialised residual gain."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from tests.support.numerics import assert_close_scaled
from tests.support.speech_helpers import MICRO_MODEL

from bio_speech_dyt.dyt import DyT
from bio_speech_dyt.train import no_decay_names
from genomics.models.caduceus import Caduceus, CaduceusConfig
from genomics.models.hyena import HyenaDNA, HyenaDNAConfig
from genomics.tokenizer import A_ID, T_ID, reverse_complement_ids
from speech.models.wav2vec2 import Wav2Vec2ModelConfig, build_wav2vec2

HYENA = dict(d_model=32, n_layer=2, d_inner=64, l_max=66, filter_order=16, embed_dropout=0.0)
CADUCEUS = dict(d_model=16, n_layer=2, d_state=4)
ROLES = {"attention": 0.8, "other": 0.2, "final": 0.05}


def _ids(length: int = 24) -> torch.Tensor:
    return torch.randint(A_ID, T_ID + 1, (2, length), generator=torch.Generator().manual_seed(0))


def test_hyena_embed_gain_scales_the_stream_not_the_head():
    torch.manual_seed(0)
    model = HyenaDNA(HyenaDNAConfig(norm="dyt", embed_gain=True, **{**HYENA, "n_layer": 0}))
    assert model.embed_gain.ndim == 0 and model.embed_gain.item() == pytest.approx(math.sqrt(32), rel=1e-6)
    assert "embed_gain" in no_decay_names(model)
    with torch.no_grad():
        model.embed_gain.fill_(3.0)
    ids = _ids()
    f, e = model.norm_f, model.embedding.weight[ids]
    expected = f.weight * torch.tanh(f.alpha * 3.0 * e) + f.bias
    assert_close_scaled(model.hidden(ids), expected, rtol=1e-5, msg="hidden with the gain")
    assert_close_scaled(model(ids), expected @ model.embedding.weight.T, rtol=1e-5, msg="logits with the gain")
    model(ids).sum().backward()
    assert model.embed_gain.grad is not None and model.embed_gain.grad.abs() > 0


def test_caduceus_embed_gain_keeps_ps_equivariance():
    torch.manual_seed(0)
    model = Caduceus(CaduceusConfig(rcps=True, norm="dyt", embed_gain=True, **CADUCEUS)).eval()
    assert model.embed_gain.item() == pytest.approx(4.0)
    with torch.no_grad():
        model.embed_gain.fill_(2.5)
        plain = Caduceus(CaduceusConfig(rcps=True, norm="dyt", **CADUCEUS)).eval()
        plain.load_state_dict({k: v for k, v in model.state_dict().items() if k != "embed_gain"})
        plain.embedding.weight.mul_(2.5)  # the gain is the same as a larger embedding, for the blocks
    x = _ids(30)
    assert_close_scaled(model.hidden(x), plain.hidden(x), rtol=1e-5, msg="gain vs a larger embedding")
    logits, logits_rc = model(x), model(reverse_complement_ids(x))
    assert_close_scaled(logits_rc, logits.flip(1)[..., model.complement], rtol=1e-4, msg="PS logits of RC(x)")


def _alphas(model: torch.nn.Module) -> dict[str, float]:
    return {n: round(m.alpha.item(), 6) for n, m in model.named_modules() if isinstance(m, DyT)}


def test_alpha_init_per_role_in_hyena_and_caduceus():
    hyena = _alphas(HyenaDNA(HyenaDNAConfig(norm="dyt", alpha_init=ROLES, **HYENA)))
    assert hyena == {"layers.0.norm1": 0.8, "layers.0.norm2": 0.2, "layers.1.norm1": 0.8, "layers.1.norm2": 0.2,
                     "norm_f": 0.05}
    for rcps in (False, True):
        cad = _alphas(Caduceus(CaduceusConfig(norm="dyt", rcps=rcps, alpha_init={"attention": 0.8, "final": 2.0},
                                              **CADUCEUS)))
        assert sorted(cad.values()) == [0.8, 0.8, 2.0] and cad[next(n for n in cad if "norm_f" in n)] == 2.0


def test_alpha_init_per_role_in_wav2vec2():
    cfg = Wav2Vec2ModelConfig(norm="dyt", alpha_init=ROLES, norm_order="pre", layer_norm_features=False,
                              **MICRO_MODEL)
    model, report = build_wav2vec2(cfg)
    roles = {r.path: (r.role, r.alpha_init) for r in report}
    assert roles["encoder.layer_norm"] == ("final", 0.05)
    assert roles["encoder.layers.1.self_attn_layer_norm"] == ("attention", 0.8)
    assert roles["encoder.layers.1.ffn_layer_norm"] == ("other", 0.2)
    assert roles["encoder_frontend.post_extract_layer_norm"] == ("other", 0.2)
    assert model.encoder.layer_norm.alpha.item() == pytest.approx(0.05)


def test_zero_residual_gain_starts_as_the_embedding_alone():
    torch.manual_seed(0)
    model = HyenaDNA(HyenaDNAConfig(norm="dyt", residual_gain_init=0.0, **HYENA))
    plain = HyenaDNA(HyenaDNAConfig(norm="dyt", **HYENA))
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in plain.parameters()) + 2 * 2
    ids = _ids()
    f, e = model.norm_f, model.embedding.weight[ids]
    assert_close_scaled(model.hidden(ids), f.weight * torch.tanh(f.alpha * e) + f.bias, rtol=1e-6, msg="zero gains")
    model(ids).logsumexp(-1).sum().backward()
    gains = [model.layers[i].gain1.grad for i in range(2)] + [model.layers[i].gain2.grad for i in range(2)]
    assert all(g is not None and g.abs() > 0 for g in gains)
    assert model.layers[0].mixer.in_proj.weight.grad.abs().max() == 0  # the branches learn once the gains move


def test_hyena_final_norm_ablation_swaps_only_the_final_norm():
    """``final_norm: layernorm`` with ``norm: dyt``: DyT in every block, a LayerNorm in front of the head,
    which then normalises exactly as ``nn.LayerNorm`` does."""
    torch.manual_seed(0)
    model = HyenaDNA(HyenaDNAConfig(d_model=16, d_inner=32, l_max=34, norm="dyt", final_norm="layernorm"))
    kinds = {name: type(m) for name, m in model.named_modules() if isinstance(m, (DyT, torch.nn.LayerNorm))}
    assert kinds.pop("norm_f") is torch.nn.LayerNorm
    assert kinds and set(kinds.values()) == {DyT}
    x = 3.0 * torch.randn(2, 5, 16, dtype=torch.float64)
    ref = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-5)
    torch.testing.assert_close(model.norm_f.double()(x), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("rcps", [False, True])
def test_caduceus_keep_norms_keeps_rmsnorm_only_where_asked(rcps):
    """``keep_norms: [layers.0.norm]`` with ``norm: dyt``: the first block's norm stays an RMSNorm
    (inside the RCPS wrapper for PS, which stays RC-equivariant), every other norm is a DyT."""
    torch.manual_seed(0)
    model = Caduceus(CaduceusConfig(rcps=rcps, norm="dyt", keep_norms=["layers.0.norm"], **CADUCEUS)).eval()
    kinds = {name: type(m) for name, m in model.named_modules() if isinstance(m, (DyT, torch.nn.RMSNorm))}
    first = "layers.0.norm.submodule" if rcps else "layers.0.norm"
    assert kinds.pop(first) is torch.nn.RMSNorm
    assert len(kinds) == CADUCEUS["n_layer"] and set(kinds.values()) == {DyT}
    x = 0.03 * torch.randn(2, 5, 16, dtype=torch.float64)
    ref = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
    norm = model.layers[0].norm.submodule if rcps else model.layers[0].norm
    torch.testing.assert_close(copy.deepcopy(norm).double()(x), ref, rtol=1e-10, atol=1e-10)
    if rcps:
        ids = _ids(30)
        logits, logits_rc = model(ids), model(reverse_complement_ids(ids))
        assert_close_scaled(logits_rc, logits.flip(1)[..., model.complement], rtol=1e-4, msg="PS logits of RC(x)")
    # under the native norm the option selects nothing; a pattern that matches no norm is an error
    native = Caduceus(CaduceusConfig(rcps=rcps, keep_norms=["norm_f"], **CADUCEUS))
    assert not any(isinstance(m, DyT) for m in native.modules())
    with pytest.raises(ValueError, match=r"keep_norms pattern\(s\) \['layer.0.norm'\] match no norm; norm paths: "
                                         r"layers.0.norm, layers.1.norm, norm_f"):
        Caduceus(CaduceusConfig(norm="dyt", keep_norms=["layer.0.norm"], **CADUCEUS))


def test_caduceus_dyt_input_scale_builds_scaled_dyts_with_their_alpha():
    """``dyt_input_scale: batch`` makes every DyT a ScaledDyT (alpha_overrides still apply); it
    needs ``norm: dyt``."""
    from bio_speech_dyt.scaled_dyt import ScaledDyT

    model = Caduceus(CaduceusConfig(norm="dyt", dyt_input_scale="batch", alpha_init=1.0,
                                    alpha_overrides={"layers.0.norm": 3.0}, **CADUCEUS))
    dyts = {name: m for name, m in model.named_modules() if isinstance(m, DyT)}
    assert set(dyts) == {"layers.0.norm", "layers.1.norm", "norm_f"}
    assert all(isinstance(m, ScaledDyT) and m.scope == "batch" for m in dyts.values())
    assert [float(m.alpha) for m in dyts.values()] == [3.0, 1.0, 1.0]
    assert torch.isfinite(model(_ids())).all()
    with pytest.raises(ValueError, match=r"model.dyt_input_scale: 'token' needs model.norm: dyt \(got 'rmsnorm'\)"):
        Caduceus(CaduceusConfig(dyt_input_scale="token", **CADUCEUS))
