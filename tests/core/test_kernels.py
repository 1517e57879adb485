"""DyT kernels: the entry point, the ``torch`` (CPU) backend, the custom op and the references.

Numerics against float64 on fresh random inputs with poisoned outputs go through
:mod:`bio_speech_dyt.kernels.testing` (shared with ``benchmarks/gpu_check.py``); the Triton
kernels are tested in ``test_kernels_triton.py``.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from bio_speech_dyt import kernels
from bio_speech_dyt.dyt import DyT
from bio_speech_dyt.kernels import chunked, testing
from bio_speech_dyt.kernels.reference import dyt_backward_reference, dyt_reference
from bio_speech_dyt.kernels.testing import Case

CASES = testing.standard_cases() + testing.edge_cases()
LAYOUT_CASES = [  # (shape, channels_last) for the small float64 checks
    ((3, 5), True),
    ((2, 3, 5), True),
    ((2, 5, 3), False),
    ((2, 5, 2, 2), False),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_torch_backend_matches_float64_reference(case: Case) -> None:
    testing.check(case, "torch", "cpu")


@pytest.mark.parametrize(
    "case",
    [
        Case((50, 7)),
        Case((40, 33), dtype=torch.bfloat16, bias=False),
        Case((3, 100, 10), channels_last=False),  # one sample exceeds a chunk: chunks along space
        Case((9, 4, 5), channels_last=False, dtype=torch.bfloat16, weight=False),
    ],
    ids=str,
)
def test_torch_backend_in_many_chunks(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunked, "CHUNK_ELEMS", 64)
    testing.check(case, "torch", "cpu")


@pytest.mark.parametrize("case", [Case((3, 768)), Case((2, 7, 4), channels_last=False, bias=False)], ids=str)
def test_reference_backend_matches_float64_reference(case: Case) -> None:
    testing.check(case, "reference", "cpu")


def _float64_args(shape: tuple[int, ...], channels_last: bool, weight: bool, bias: bool, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    c = shape[-1] if channels_last else shape[1]
    make = lambda *s: torch.randn(s, generator=gen, dtype=torch.float64).requires_grad_()  # noqa: E731
    return make(*shape), make(1), make(c) if weight else None, make(c) if bias else None


@pytest.mark.parametrize("shape, channels_last", LAYOUT_CASES)
@pytest.mark.parametrize("weight, bias", [(True, True), (True, False), (False, False)])
def test_reference_gradcheck(shape, channels_last, weight, bias) -> None:
    args = _float64_args(shape, channels_last, weight, bias)
    fn = lambda *a: dyt_reference(*a, channels_last=channels_last)  # noqa: E731
    assert torch.autograd.gradcheck(fn, args)


@pytest.mark.parametrize("shape, channels_last", LAYOUT_CASES)
def test_backward_reference_matches_autograd(shape, channels_last) -> None:
    x, alpha, weight, bias = _float64_args(shape, channels_last, True, True)
    dy = torch.randn_like(x)
    y = dyt_reference(x, alpha, weight, bias, channels_last=channels_last)
    expected = torch.autograd.grad(y, (x, alpha, weight, bias), dy)
    got = dyt_backward_reference(dy, x.detach(), alpha.detach(), weight.detach(), bias, channels_last=channels_last)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e)


@pytest.mark.parametrize("shape, channels_last", LAYOUT_CASES)
def test_torch_backend_gradcheck_float64(shape, channels_last) -> None:
    """In float64 the torch backend computes in float64: the custom op's autograd wiring, exactly."""
    args = _float64_args(shape, channels_last, True, True)
    fn = lambda *a: kernels.dyt(*a, channels_last=channels_last, backend="torch")  # noqa: E731
    assert torch.autograd.gradcheck(fn, args)


def test_torch_backend_is_deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunked, "CHUNK_ELEMS", 4096)
    case = Case((64, 768))
    inputs = testing.make_inputs(case, "cpu", seed=3)
    first = testing.run(inputs, case.channels_last, "torch")
    second = testing.run(inputs, case.channels_last, "torch")
    for a, b in zip(first, second):
        assert torch.equal(a, b)


class _TinyNet(nn.Module):
    """A conv front end with a channels-first DyT, then tokens with channels-last DyTs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 16, 3)
        self.norm_cf = DyT(16, channels_last=False)
        self.proj = nn.Linear(16, 24)
        self.norm = DyT(24)
        self.norm_plain = DyT(24, elementwise_affine=False)
        self.head = nn.Linear(24, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm_cf(self.conv(x)).transpose(1, 2)
        return self.head(self.norm_plain(self.norm(self.proj(h))))


@pytest.mark.parametrize("cpu_backend", ["cpp", "torch"])
def test_torch_compile_fullgraph_matches_eager(cpu_backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(kernels.ENV_CPU_BACKEND, cpu_backend)  # what the DyT layers' "auto" runs
    torch.manual_seed(0)
    model = _TinyNet()
    with torch.no_grad():
        for m in (model.norm_cf, model.norm):
            m.weight.normal_()
            m.bias.normal_()
    x = torch.randn(2, 3, 11)
    compiled = torch.compile(model, fullgraph=True)
    out = compiled(x)
    out.square().sum().backward()
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    expected_out = model(x)
    expected_out.square().sum().backward()
    torch.testing.assert_close(out, expected_out)
    for g, p in zip(got, model.parameters()):
        torch.testing.assert_close(g, p.grad)


@pytest.mark.parametrize("backend", ["torch", "cpp"])
@pytest.mark.parametrize(
    "shape, channels_last, weight, bias",
    [((3, 7), True, True, True), ((2, 7, 3), False, True, False), ((4, 7), True, False, False)],
)
def test_custom_ops_pass_opcheck(shape, channels_last, weight, bias, backend) -> None:
    x, alpha, w, b = _float64_args(shape, channels_last, weight, bias)
    x, alpha, w, b = (None if t is None else t.float().detach().requires_grad_() for t in (x, alpha, w, b))
    torch.library.opcheck(kernels.dyt_forward, (x, alpha, w, b, channels_last, backend))
    dy = torch.randn_like(x)
    detached = (x.detach(), alpha.detach(), None if w is None else w.detach(), None if b is None else b.detach())
    torch.library.opcheck(kernels.dyt_backward, (dy, *detached, channels_last, backend))


def test_auto_backend_and_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(2, 3)
    monkeypatch.delenv(kernels.ENV_BACKEND, raising=False)
    monkeypatch.delenv(kernels.ENV_CPU_BACKEND, raising=False)
    assert kernels.resolve_backend("auto", x) == "cpp"  # more in test_kernels_cpp.py
    assert kernels.resolve_backend("auto", x.double()) == "torch"
    monkeypatch.setenv(kernels.ENV_BACKEND, "reference")
    assert kernels.resolve_backend("auto", x) == "reference"
    assert kernels.resolve_backend("torch", x) == "torch"  # an explicit backend wins over the env var
    monkeypatch.setenv(kernels.ENV_BACKEND, "cuda-magic")
    with pytest.raises(ValueError, match=kernels.ENV_BACKEND):
        kernels.resolve_backend("auto", x)
    with pytest.raises(ValueError, match="unknown DyT backend"):
        kernels.resolve_backend("fast", x)


@pytest.mark.parametrize(
    "x, alpha, weight, match",
    [
        (torch.randn(2, 4), torch.ones(2), torch.ones(4), "one element"),
        (torch.randn(2, 4), torch.ones(1), torch.ones(3), r"shape \(4,\)"),
        (torch.randn(4), torch.ones(1), None, "channels-first"),
        (torch.ones(2, 4, dtype=torch.long), torch.ones(1), None, "floating-point"),
    ],
)
def test_bad_arguments_are_rejected(x, alpha, weight, match) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        kernels.dyt(x, alpha, weight, channels_last=match != "channels-first")


def test_dyt_module_calls_the_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = kernels.dyt

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(kernels, "dyt", spy)
    DyT(8, channels_last=False, backend="torch")(torch.randn(2, 8, 3))
    assert calls == [{"channels_last": False, "backend": "torch"}]


@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_saves_only_input_and_parameters_for_backward(backend: str) -> None:
    x = torch.randn(64, 32, requires_grad=True)
    module = DyT(32, backend=backend)
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        module(x)
    full_size = [t for t in saved if t.numel() == x.numel()]
    assert len(full_size) == 1 and full_size[0].data_ptr() == x.data_ptr()
    assert sum(t.numel() for t in saved) == x.numel() + 1 + 2 * 32


@pytest.mark.parametrize("backend, dtype", [("torch", torch.float64), ("cpp", torch.float32)])
def test_empty_and_non_contiguous_inputs(backend: str, dtype: torch.dtype) -> None:
    module = DyT(6, backend=backend)
    x = torch.randn(0, 6, requires_grad=True)
    y = module(x)
    y.sum().backward()
    assert y.shape == (0, 6) and module.alpha.grad.item() == 0 and x.grad.shape == (0, 6)
    module.zero_grad()
    base = torch.randn(6, 5, dtype=dtype)
    xt = base.t().requires_grad_()  # (5, 6), not contiguous
    module.to(dtype)
    module(xt).sum().backward()
    ref = DyT(6, backend="reference").to(dtype)
    ref.load_state_dict(module.state_dict())
    xr = base.t().clone().requires_grad_()
    ref(xr).sum().backward()
    torch.testing.assert_close(xt.grad, xr.grad)
    torch.testing.assert_close(module.alpha.grad, ref.alpha.grad)


@pytest.mark.parametrize("channels_last", [True, False])
def test_output_can_be_edited_in_place(channels_last):
    """fairseq2's masker writes into the post-extraction norm's output (``seqs[mask] = emb``):
    the op must return a fresh tensor, not a view, or autograd forbids the in-place edit."""
    torch.manual_seed(0)
    m = DyT(8, channels_last=channels_last)
    x = torch.randn(2, 5, 8, requires_grad=True) if channels_last else torch.randn(2, 8, 5, requires_grad=True)
    y = m(x)
    assert not y._is_view()
    y[0, 1] = 0.0
    y.sum().backward()
    assert torch.isfinite(m.alpha.grad).all() and x.grad[0, 1].abs().sum() == 0


@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_eager_path_matches_the_custom_op(backend: str) -> None:
    """kernels.dyt runs eagerly through an autograd.Function and under torch.compile through the op:
    the same bodies, so the same bits."""
    inputs = testing.make_inputs(Case((6, 40)), "cpu", seed=2)
    leaves = [t for t in inputs[:4] if t is not None]
    results = []
    for fn in (kernels.dyt_eager, kernels.dyt_forward):
        for t in leaves:
            t.grad = None
        y = fn(*inputs[:4], True, backend)
        y.backward(inputs.dy)
        results.append([y.detach()] + [t.grad for t in leaves])
    for a, b in zip(*results):
        assert torch.equal(a, b)
