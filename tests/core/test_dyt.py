"""DyT module and functional form against the plain definition, in float64."""
import pytest
import torch

from bio_speech_dyt import DyT, dyt_reference, make_norm, resolve_alpha


def _manual(x, alpha, w, b, channels_last):
    # the definition written out independently of dyt_reference
    if not channels_last:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        w = None if w is None else w.view(shape)
        b = None if b is None else b.view(shape)
    y = torch.tanh(alpha * x)
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    return y


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_module_matches_definition(channels_last, bias):
    torch.manual_seed(0)
    m = DyT(7, alpha_init=0.7, channels_last=channels_last, bias=bias).double()
    with torch.no_grad():
        m.weight.normal_()
        if m.bias is not None:
            m.bias.normal_()
    x = torch.randn(3, 5, 7, dtype=torch.float64) if channels_last else torch.randn(3, 7, 4, 5, dtype=torch.float64)
    ref = _manual(x, m.alpha, m.weight, m.bias, channels_last)
    torch.testing.assert_close(m(x), ref, rtol=1e-12, atol=1e-12)
    assert (m.bias is None) == (not bias)


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_reference_gradcheck(channels_last, bias):
    torch.manual_seed(1)
    c = 5
    x = torch.randn(2, 3, c, dtype=torch.float64) if channels_last else torch.randn(2, c, 3, dtype=torch.float64)
    x.requires_grad_()
    alpha = torch.tensor([0.6], dtype=torch.float64, requires_grad=True)
    w = torch.randn(c, dtype=torch.float64, requires_grad=True)
    b = torch.randn(c, dtype=torch.float64, requires_grad=True) if bias else None
    inputs = (x, alpha, w) + ((b,) if bias else ())

    def f(x, alpha, w, b=None):
        return dyt_reference(x, alpha, w, b, channels_last=channels_last)

    assert torch.autograd.gradcheck(f, inputs)


@pytest.mark.parametrize("channels_last", [True, False])
def test_module_gradients_match_float64_reference(channels_last):
    torch.manual_seed(2)
    m = DyT(6, alpha_init=0.5, channels_last=channels_last)
    x = torch.randn(4, 6, 3) if not channels_last else torch.randn(4, 3, 6)
    x.requires_grad_()
    dy = torch.randn_like(x)
    (m(x) * dy).sum().backward()
    x64 = x.detach().double().requires_grad_()
    a64, w64, b64 = (p.detach().double().requires_grad_() for p in (m.alpha, m.weight, m.bias))
    (_manual(x64, a64, w64, b64, channels_last) * dy.double()).sum().backward()
    for got, ref in ((x.grad, x64.grad), (m.alpha.grad, a64.grad), (m.weight.grad, w64.grad), (m.bias.grad, b64.grad)):
        torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-6)


def test_no_affine_and_init():
    m = DyT(4, alpha_init=0.25, elementwise_affine=False)
    assert m.weight is None and m.bias is None
    assert [n for n, _ in m.named_parameters()] == ["alpha"]
    x = torch.randn(2, 4)
    torch.testing.assert_close(m(x), torch.tanh(0.25 * x))
    m2 = DyT((8,))
    assert m2.alpha.item() == 0.5 and torch.all(m2.weight == 1) and torch.all(m2.bias == 0)


def test_bad_shapes():
    with pytest.raises(ValueError, match="one channel dimension"):
        DyT((3, 4))
    with pytest.raises(ValueError, match="expects 4 channels"):
        DyT(4)(torch.randn(2, 5))


def test_norm_factory_and_roles():
    assert isinstance(make_norm("layernorm", 8), torch.nn.LayerNorm)
    assert isinstance(make_norm("rmsnorm", 8), torch.nn.RMSNorm)
    d = make_norm("dyt", 8, alpha_init={"attention": 0.8, "other": 0.2, "final": 0.1}, role="final", bias=False)
    assert isinstance(d, DyT) and d.alpha.item() == pytest.approx(0.1) and d.bias is None
    assert resolve_alpha({"default": 0.3}, "attention") == pytest.approx(0.3)
    with pytest.raises(ValueError, match="unknown norm"):
        make_norm("batchnorm", 8)
    with pytest.raises(ValueError, match="unknown role"):
        resolve_alpha({"atention": 1.0}, "other")
