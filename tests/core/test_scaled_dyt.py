"""ScaledDyT (the parity study's scale-tracking ablation) against float64 references."""
import pytest
import torch

from bio_speech_dyt import make_norm
from bio_speech_dyt.scaled_dyt import ScaledDyT


def _manual(x, alpha, w, scope, channels_last):
    # written out independently: the RMS, then tanh, then the per-channel weight
    if scope == "batch":
        rms = torch.sqrt((x * x).sum() / x.numel() + 1e-5)
    else:
        dim = -1 if channels_last else 1
        rms = torch.sqrt((x * x).sum(dim, keepdim=True) / x.shape[dim] + 1e-5)
    w = w if channels_last else w.view(1, -1, *([1] * (x.dim() - 2)))
    return w * torch.tanh(alpha * x / rms)


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("scope", ["batch", "token"])
def test_scaled_dyt_matches_definition_and_gradcheck(scope, channels_last):
    gen = torch.Generator().manual_seed(0)
    m = ScaledDyT(6, scope=scope, alpha_init=0.9, channels_last=channels_last, bias=False).double()
    with torch.no_grad():
        m.weight.copy_(torch.randn(6, generator=gen, dtype=torch.float64))
    shape = (3, 5, 6) if channels_last else (3, 6, 4)
    x = 4.0 * torch.randn(*shape, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(m(x), _manual(x, m.alpha, m.weight, scope, channels_last), rtol=1e-12, atol=1e-12)
    # gradients flow through the statistic, as through RMSNorm's
    xg = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: m(t), (xg,))


@pytest.mark.parametrize("scope", ["batch", "token"])
def test_scaled_dyt_is_invariant_to_the_input_scale(scope):
    """The point of the ablation: the output does not depend on the input's overall scale
    (up to eps), where plain DyT's does."""
    x = torch.randn(2, 7, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    m = make_norm("dyt", 8, alpha_init=1.0, input_scale=scope, bias=False).double()
    torch.testing.assert_close(m(0.5 * x), m(20.0 * x), rtol=1e-4, atol=1e-4)
    plain = make_norm("dyt", 8, alpha_init=1.0, bias=False).double()
    assert (plain(0.5 * x) - plain(20.0 * x)).abs().max() > 0.5
    if scope == "token":  # one token's scale changes only that token
        y = x.clone()
        y[0, 3] *= 100.0
        torch.testing.assert_close(m(y)[1], m(x)[1], rtol=1e-12, atol=1e-12)


def test_scaled_dyt_errors():
    with pytest.raises(ValueError, match=r"ScaledDyT scope 'channel': choose one of \('batch', 'token'\)"):
        ScaledDyT(4, scope="channel")
    with pytest.raises(ValueError, match="input_scale 'batch' applies to DyT only, not to 'rmsnorm'"):
        make_norm("rmsnorm", 4, input_scale="batch")
