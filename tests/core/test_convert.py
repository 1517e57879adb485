"""convert_norms on torch, duck-typed mamba and fairseq2 models."""
import pytest
import torch
from torch import nn

from bio_speech_dyt import DyT, convert_norms
from bio_speech_dyt.convert import FusedAddNormError, MambaStyleDyT


def test_transformer_encoder_all_layernorms_swapped_with_roles():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, dropout=0.0)
    enc = nn.TransformerEncoder(layer, 3, norm=nn.LayerNorm(16), enable_nested_tensor=False)
    model, report = convert_norms(enc, alpha_init={"attention": 0.9, "other": 0.4, "final": 0.2})
    assert len(report) == 7  # 2 per layer + final
    assert not any(isinstance(m, nn.LayerNorm) for m in model.modules())
    assert report.swapped[-1].path == "norm" and report.swapped[-1].role == "final"
    assert model.norm.alpha.item() == pytest.approx(0.2)
    assert model.layers[0].norm1.alpha.item() == pytest.approx(0.4)
    x = torch.randn(2, 5, 16)
    model(x).square().mean().backward()
    again, _ = convert_norms(nn.Sequential(nn.LayerNorm(4), nn.LayerNorm(4)), alpha_overrides={"1": 2.0})
    assert [m.alpha.item() for m in again] == [0.5, 2.0]
    assert all(m.alpha.grad is not None and m.alpha.grad.abs() > 0 for m in model.modules() if isinstance(m, DyT))


def test_rmsnorm_tree_keeps_dtype_device_and_bias_free():
    model = nn.Sequential(nn.Linear(8, 8), nn.RMSNorm(8), nn.Sequential(nn.GroupNorm(2, 8), nn.RMSNorm(8))).to(torch.float64)
    with torch.no_grad():
        model[1].weight.fill_(2.0)
    model, report = convert_norms(model, alpha_init=0.3, exclude=["2.*"])
    assert [r.path for r in report] == ["1"]
    assert isinstance(model[1], DyT) and model[1].bias is None
    assert model[1].weight.dtype == torch.float64 and torch.all(model[1].weight == 2.0)  # affine copied
    assert isinstance(model[2][1], nn.RMSNorm) and isinstance(model[2][0], nn.GroupNorm)
    assert any("GroupNorm" in k for k in report.kept)


def test_groupnorm_opt_in_is_channels_first():
    model = nn.Sequential(nn.Conv1d(3, 4, 3), nn.GroupNorm(4, 4))
    model, report = convert_norms(model, kinds=("groupnorm",))
    assert isinstance(model[1], DyT) and not model[1].channels_last
    assert model(torch.randn(2, 3, 9)).shape == (2, 4, 7)


class MambaRMSNorm(nn.Module):
    """Duck-typed stand-in for mamba_ssm.ops.triton.layer_norm.RMSNorm."""

    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))
        self.register_parameter("bias", None)

    def forward(self, x, residual=None, prenorm=False, residual_in_fp32=False):
        raise AssertionError("the fused path must not be taken after conversion")


MambaRMSNorm.__name__ = "RMSNorm"


class MambaBlock(nn.Module):
    """mamba_ssm.modules.block.Block's structure: a fused path that reads norm.weight directly."""

    def __init__(self, d):
        super().__init__()
        self.mixer = nn.Linear(d, d)
        self.norm = MambaRMSNorm(d)
        self.fused_add_norm = True

    def forward(self, hidden, residual=None):
        if self.fused_add_norm:  # what mamba does: bypasses self.norm's forward
            residual = hidden if residual is None else hidden + residual
            hidden = residual * self.norm.weight
        else:
            hidden, residual = self.norm(hidden, residual=residual, prenorm=True)
        return self.mixer(hidden), residual


def test_mamba_fused_add_norm_is_unfused():
    block = MambaBlock(6)
    block, report = convert_norms(block)
    assert isinstance(block.norm, MambaStyleDyT) and block.norm.bias is None
    assert report.unfused == ["MambaBlock"] and block.fused_add_norm is False
    h, r = torch.randn(2, 3, 6), torch.randn(2, 3, 6)
    out, res = block(h, r)
    torch.testing.assert_close(res, h + r)
    out.sum().backward()
    assert block.norm.alpha.grad is not None


def test_mamba_fused_add_norm_error_policy():
    with pytest.raises(FusedAddNormError, match="fused_add_norm=True"):
        convert_norms(MambaBlock(4), fused_add_norm="error")


def test_input_scale_makes_the_matching_norms_scaled_dyt():
    from bio_speech_dyt.scaled_dyt import ScaledDyT

    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 4), nn.LayerNorm(4))
    model, report = convert_norms(model, input_scale={"3": "batch"})
    assert type(model[1]) is DyT and isinstance(model[3], ScaledDyT) and model[3].scope == "batch"
    assert [r.input_scale for r in report] == [None, "batch"]
    x = torch.randn(5, 4)
    torch.testing.assert_close(model[3](1e3 * x), model[3](x), rtol=1e-5, atol=1e-6)  # one RMS per call
    with pytest.raises(ValueError, match=r"input_scale pattern 'head' matches none of the swapped norms: 1"):
        convert_norms(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2)), input_scale={"head": "token"})
    block = MambaBlock(4)
    with pytest.raises(ValueError, match=r"no mamba_ssm-style .* for \['norm'\]"):
        convert_norms(block, input_scale={"norm": "token"})
    assert isinstance(block.norm, MambaRMSNorm) and block.fused_add_norm is True  # nothing half-converted


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown norm kind"):
        convert_norms(nn.Linear(2, 2), kinds=("layrnorm",))


def test_fairseq2_wav2vec2_base_every_layernorm_swapped():
    fairseq2 = pytest.importorskip("fairseq2")  # noqa: F841
    from fairseq2.models.wav2vec2 import Wav2Vec2Config, create_wav2vec2_model
    from fairseq2.nn import BatchLayout, LayerNorm

    torch.manual_seed(0)
    model = create_wav2vec2_model(Wav2Vec2Config())  # fairseq's Base structure
    model, report = convert_norms(model)
    assert len(report) == 26
    assert report.counts() == {"StandardLayerNorm": 26}
    assert "encoder_frontend.post_extract_layer_norm" in [r.path for r in report]
    assert any("GroupNorm" in k for k in report.kept)
    dyts = [m for m in model.modules() if isinstance(m, DyT)]
    assert len(dyts) == 26 and all(isinstance(m, LayerNorm) for m in dyts)  # fairseq2 interface kept
    model.train()
    wave = torch.randn(2, 16000)  # 1 s: enough frames for two mask spans
    features = model.extract_features(wave, BatchLayout.of(wave))
    features.seqs.square().mean().backward()
    assert all(m.alpha.grad is not None and torch.isfinite(m.alpha.grad).all() for m in dyts)
