"""Selective scan (chunked vs sequential reference, outputs and gradients) and the Mamba
module's mamba_ssm-compatible parameters."""
from __future__ import annotations

import pytest
import torch

from genomics.models.mamba import Mamba
from genomics.models.selective_scan import linear_scan, selective_scan, selective_scan_chunked, selective_scan_ref


def _inputs(b=2, d=6, length=45, n=4, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).requires_grad_()

    A = (-torch.rand(d, n, generator=g, dtype=torch.float64) * 4 - 0.1).to(dtype).requires_grad_()
    return [r(b, d, length), r(b, d, length), A, r(b, n, length), r(b, n, length), r(d), r(b, d, length), r(d)]


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("length, chunk", [(1, None), (7, 3), (45, None), (64, 8)])
def test_linear_scan(length, chunk, reverse):
    torch.manual_seed(length)
    a, b = torch.rand(2, length, 3, 2, dtype=torch.float64), torch.randn(2, length, 3, 2, dtype=torch.float64)
    h, ref = linear_scan(a, b, reverse=reverse, chunk=chunk), torch.full_like(b, float("nan"))
    state = torch.zeros_like(b[:, 0])
    for t in reversed(range(length)) if reverse else range(length):
        state = a[:, t] * state + b[:, t]
        ref[:, t] = state
    assert torch.allclose(h, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_chunked_scan_matches_reference(dtype, tol):
    """Outputs and all eight gradients, fp32 against the float64 sequential reference."""
    ref_in, test_in = _inputs(dtype=torch.float64), _inputs(dtype=dtype)
    ref = selective_scan_ref(*ref_in[:7], delta_bias=ref_in[7], delta_softplus=True)
    out = selective_scan_chunked(*test_in[:7], delta_bias=test_in[7], delta_softplus=True)
    grad = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    g_ref = torch.autograd.grad(ref, ref_in, grad)
    g_out = torch.autograd.grad(out, test_in, grad.to(dtype))
    assert out.dtype == dtype

    def rel(x, y):
        return ((x.double() - y).abs().max() / y.abs().max()).item()

    assert rel(out, ref) < tol
    for i, (g, r) in enumerate(zip(g_out, g_ref)):
        assert rel(g, r) < tol, f"gradient of input {i}"


def test_dispatch_on_cpu_is_the_chunked_scan():
    x = _inputs()
    assert torch.equal(selective_scan(*x[:7], delta_bias=x[7], delta_softplus=True),
                       selective_scan_chunked(*x[:7], delta_bias=x[7], delta_softplus=True))


def test_mamba_parameters_match_mamba_ssm():
    """Names and shapes of mamba_ssm.modules.mamba_simple.Mamba(d_model=32) (d_state 16, d_conv 4, expand 2)."""
    m = Mamba(32)
    expected = {
        "A_log": (64, 16), "D": (64,), "in_proj.weight": (128, 32), "conv1d.weight": (64, 1, 4), "conv1d.bias": (64,),
        "x_proj.weight": (2 + 32, 64), "dt_proj.weight": (64, 2), "dt_proj.bias": (64,), "out_proj.weight": (32, 64),
    }
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == expected
    assert torch.allclose(torch.nn.functional.softplus(m.dt_proj.bias), torch.nn.functional.softplus(m.dt_proj.bias).clamp(1e-4, 0.1))
    Mamba(32).load_state_dict(m.state_dict())


def test_mamba_forward_is_causal():
    torch.manual_seed(0)
    m = Mamba(16, d_state=4).double()
    x = torch.randn(2, 30, 16, dtype=torch.float64)
    y = m(x)
    x2 = x.clone()
    x2[:, 20:] += 1.0
    assert y.shape == x.shape
    assert torch.allclose(m(x2)[:, :20], y[:, :20])
