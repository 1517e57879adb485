"""HyenaDNA: parameter count of the published tiny-1k, norm swap, FFT conv vs its definition,
causality, one optimizer step lowers the loss."""
from __future__ import annotations

import pytest
import torch

from bio_speech_dyt.dyt import DyT
from genomics.models.hyena import HyenaDNA, HyenaDNAConfig
from genomics.models.hyena_filter import fftconv, fftconv_ref
from genomics.tokenizer import A_ID, T_ID

TINY = dict(d_model=32, n_layer=2, d_inner=64, l_max=66, filter_order=16, embed_dropout=0.0)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("norm, expected", [("layernorm", 436_096), ("dyt", 436_101)])
def test_tiny_1k_parameter_count(norm, expected):
    model = HyenaDNA(HyenaDNAConfig(norm=norm))
    assert n_params(model) == expected
    if norm == "dyt":
        assert sum(isinstance(m, DyT) for m in model.modules()) == 5
        assert not any(isinstance(m, torch.nn.LayerNorm) for m in model.modules())


def test_embed_init_std_scales_only_the_embedding():
    torch.manual_seed(0)
    published = HyenaDNA(HyenaDNAConfig(d_model=256, n_layer=1, d_inner=64, l_max=66))
    unit = HyenaDNA(HyenaDNAConfig(d_model=256, n_layer=1, d_inner=64, l_max=66, embed_init_std=1.0))
    assert published.embedding.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert unit.embedding.weight.std().item() == pytest.approx(1.0, rel=0.1)
    assert unit.layers[0].mlp.fc1.weight.std().item() == pytest.approx(0.02, rel=0.1)
    scaled = HyenaDNA(HyenaDNAConfig(d_model=256, n_layer=0, d_inner=64, l_max=66, norm="dyt", embed_scale=50.0))
    ids = torch.tensor([[7, 8, 9, 10]])
    f = scaled.norm_f
    e = scaled.embedding.weight.double()[ids]
    expected = f.weight.double() * torch.tanh(f.alpha.double() * 50.0 * e) + f.bias.double()
    # the blocks (here: the final norm) see 50 x the embedding; the tied LM head keeps the raw weights
    assert torch.allclose(scaled.hidden(ids).double(), expected, atol=1e-6 * expected.abs().max().item())
    ref = expected @ scaled.embedding.weight.double().T
    assert torch.allclose(scaled(ids).double(), ref, atol=1e-5 * ref.abs().max().item())


def test_filter_parameters_have_no_weight_decay():
    from bio_speech_dyt.train import no_decay_names

    model = HyenaDNA(HyenaDNAConfig(**TINY))
    skip = no_decay_names(model)
    filt = {n for n, _ in model.named_parameters() if ".filter_fn." in n}
    assert filt and filt <= skip
    assert "layers.0.mlp.fc1.weight" not in skip


def test_fftconv_matches_definition():
    torch.manual_seed(0)
    u, k, skip = torch.randn(2, 6, 37, dtype=torch.float64), torch.randn(6, 37, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    ref = fftconv_ref(u, k, skip)
    out = torch.full_like(ref, float("nan"))
    out.copy_(fftconv(u.float(), k.float(), skip.float()))
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm", "dyt"])
def test_shapes_and_causality(norm):
    torch.manual_seed(0)
    model = HyenaDNA(HyenaDNAConfig(norm=norm, **TINY)).eval()
    x = torch.randint(A_ID, T_ID + 1, (2, 64))
    logits = model(x)
    assert logits.shape == (2, 64, 16)
    y = x.clone()
    y[:, 40:] = A_ID + (y[:, 40:] - A_ID + 1) % 4  # change the future only
    tol = 1e-5 * logits.abs().max().item()  # the FFT convolution mixes positions at rounding level
    assert torch.allclose(model(y)[:, :40], logits[:, :40], atol=tol)
    assert not torch.allclose(model(y)[:, 40:], logits[:, 40:], atol=tol)


def test_too_long_sequence_is_a_clear_error():
    model = HyenaDNA(HyenaDNAConfig(**TINY))
    with pytest.raises(ValueError, match="l_max"):
        model(torch.randint(A_ID, T_ID + 1, (1, 100)))


@pytest.mark.parametrize("norm", ["layernorm", "dyt"])
def test_one_step_lowers_the_loss(norm):
    torch.manual_seed(0)
    model = HyenaDNA(HyenaDNAConfig(norm=norm, **TINY))
    x = torch.randint(A_ID, T_ID + 1, (4, 65))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def loss() -> torch.Tensor:
        return torch.nn.functional.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())

    before = loss()
    before.backward()
    opt.step()
    assert loss().item() < before.item()
