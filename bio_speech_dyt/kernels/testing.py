"""Numerical checks of the DyT backends against the float64 reference.

Shared by the test-suite and ``benchmarks/gpu_check.py`` (which runs with only torch and triton):
fresh random inputs (never zeros), every output buffer poisoned with NaN before the kernel writes
(``torch.empty`` fills NaN under :func:`poisoned_memory`), the forward and all four gradients
compared with autograd of :func:`dyt_reference` in float64.

Error measures: ``y`` by max-norm relative error ``max|a - e| / max|e|``; ``dx`` relative to
``max |dy * weight * alpha|`` (saturated inputs have ``1 - tanh^2`` below float64's resolution,
where the float64 reference itself returns 0); the reduced gradients relative to the sum of the
magnitudes of their terms (``sum |dy * t|`` for ``dweight`` ...), the scale at which a
floating-point sum is accurate whatever its cancellation. NaN / inf must appear exactly where the
reference has them.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Iterator, NamedTuple

import torch
from torch import Tensor

from bio_speech_dyt.kernels.reference import dyt_backward_reference, dyt_reference

TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 2e-3}
OUTPUTS = ("y", "dx", "dalpha", "dweight", "dbias")


@dataclasses.dataclass(frozen=True)
class Case:
    """One DyT call to check: input shape / layout / dtypes, which parameters exist, input scale."""

    shape: tuple[int, ...]
    channels_last: bool = True
    dtype: torch.dtype = torch.float32
    param_dtype: torch.dtype | None = None  # default: dtype
    weight: bool = True
    bias: bool = True
    x_scale: float = 1.0  # x = randn * x_scale**u, u ~ U(0, 1): magnitudes spread log-uniformly
    alpha: float = 0.8
    specials: bool = False  # put NaN, +inf, -inf into x

    @property
    def channels(self) -> int:
        return self.shape[-1] if self.channels_last else self.shape[1]

    def __str__(self) -> str:
        layout = "last" if self.channels_last else "first"
        params = ("w" if self.weight else "") + ("b" if self.bias else "")
        pdt = f"/{str(self.param_dtype).removeprefix('torch.')}" if self.param_dtype else ""
        special = "-nan/inf" if self.specials else ""
        return f"{self.shape}-{layout}-{str(self.dtype).removeprefix('torch.')}{pdt}-{params or 'noaffine'}-x{self.x_scale:g}{special}"


class Inputs(NamedTuple):
    x: Tensor
    alpha: Tensor
    weight: Tensor | None
    bias: Tensor | None
    dy: Tensor


class Outputs(NamedTuple):
    y: Tensor
    dx: Tensor
    dalpha: Tensor
    dweight: Tensor | None
    dbias: Tensor | None


@contextlib.contextmanager
def poisoned_memory() -> Iterator[None]:
    """While active, ``torch.empty*`` returns NaN-filled float memory (torch's deterministic mode)."""
    was_on, was_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_on, warn_only=was_warn)
        torch.utils.deterministic.fill_uninitialized_memory = fill


def make_inputs(case: Case, device: str | torch.device, seed: int = 0) -> Inputs:
    """Fresh random leaf tensors for ``case`` (never zeros; weight / alpha away from 0)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    pdt = case.param_dtype or case.dtype

    def rand(*shape: int, scale: float = 1.0, dtype: torch.dtype = case.dtype) -> Tensor:
        return (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(device=device, dtype=dtype)

    x = rand(*case.shape, scale=1.0)
    if case.x_scale != 1.0:
        x = x * case.x_scale ** torch.rand(case.shape, generator=gen, dtype=torch.float64).to(device=device, dtype=x.dtype)
    if case.specials:  # on different rows and channels (stride C + 1 in the flat view)
        flat = x.view(-1)
        for i, value in enumerate((float("nan"), float("inf"), -float("inf"))):
            flat[(i * (case.channels + 1)) % flat.numel()] = value
    x.requires_grad_()
    alpha = torch.tensor([case.alpha], dtype=pdt, device=device, requires_grad=True)
    sign = torch.where(torch.rand(case.channels, generator=gen) < 0.5, -1.0, 1.0).to(torch.float64)
    weight = ((0.5 + torch.rand(case.channels, generator=gen, dtype=torch.float64)) * sign).to(device, pdt) if case.weight else None
    bias = rand(case.channels, dtype=pdt) if case.bias else None
    for p in (weight, bias):
        if p is not None:
            p.requires_grad_()
    return Inputs(x, alpha, weight, bias, rand(*case.shape))


def run(inputs: Inputs, channels_last: bool, backend: str) -> Outputs:
    """Forward + backward through :func:`bio_speech_dyt.kernels.dyt`, outputs poisoned first."""
    from bio_speech_dyt.kernels import dyt

    leaves = [t for t in inputs[:4] if t is not None]
    for t in leaves:
        t.grad = None
    with poisoned_memory():
        y = dyt(inputs.x, inputs.alpha, inputs.weight, inputs.bias, channels_last=channels_last, backend=backend)
        y.backward(inputs.dy)
    grad = lambda t: None if t is None else t.grad  # noqa: E731
    return Outputs(y.detach(), inputs.x.grad, inputs.alpha.grad, grad(inputs.weight), grad(inputs.bias))


def reference(inputs: Inputs, channels_last: bool) -> tuple[Outputs, Outputs]:
    """Float64 autograd of the definition, and the magnitude scale of each output (see module doc)."""
    x, alpha, weight, bias, dy = (None if t is None else t.detach().to(torch.float64) for t in inputs)
    leaves = [t.requires_grad_() for t in (x, alpha, weight, bias) if t is not None]
    y = dyt_reference(x, alpha, weight, bias, channels_last=channels_last)
    grads = torch.autograd.grad(y, leaves, dy)
    it = iter(grads)
    exact = Outputs(y.detach(), next(it), next(it), next(it) if weight is not None else None, next(it) if bias is not None else None)
    absolute = lambda t: None if t is None else t.detach().abs()  # noqa: E731
    with torch.no_grad():
        magnitude = (dy.abs(), x.detach().abs(), alpha.detach().abs(), absolute(weight), bias)
        _, da, dw, db = dyt_backward_reference(*magnitude, channels_last=channels_last)
        dx_scale = dyt_backward_reference(dy.abs(), torch.zeros_like(x), *magnitude[2:], channels_last=channels_last)[0]
    scale = Outputs(exact.y.abs().amax(), dx_scale.amax(), da, dw, db)
    return exact, scale


def error(actual: Tensor, expected: Tensor, scale: Tensor) -> float:
    """Max of ``|actual - expected| / max(scale)`` over finite entries; inf if non-finite entries differ."""
    a, e = actual.detach().to(torch.float64).cpu(), expected.detach().cpu()
    if a.shape != e.shape:
        return float("inf")
    nan_a, nan_e = torch.isnan(a), torch.isnan(e)
    inf_e = torch.isinf(e)
    if not torch.equal(nan_a, nan_e) or not torch.equal(a[inf_e], e[inf_e]):
        return float("inf")
    finite = torch.isfinite(e)
    if not finite.any():
        return 0.0
    if not torch.isfinite(a[finite]).all():
        return float("inf")
    denom = scale.detach().cpu().to(torch.float64)
    denom = denom[torch.isfinite(denom)].abs().max() if torch.isfinite(denom).any() else torch.tensor(1.0)
    return ((a[finite] - e[finite]).abs().max() / denom.clamp_min(1e-30)).item()


def errors(case: Case, backend: str, device: str | torch.device, seed: int = 0) -> dict[str, float]:
    """Error of every output of ``backend`` on ``case`` (absent parameters skipped)."""
    inputs = make_inputs(case, device, seed)
    got = run(inputs, case.channels_last, backend)
    exact, scale = reference(inputs, case.channels_last)
    return {
        name: error(g, e, s)
        for name, g, e, s in zip(OUTPUTS, got, exact, scale)
        if e is not None
    }


def check(case: Case, backend: str, device: str | torch.device, seed: int = 0) -> dict[str, float]:
    """:func:`errors`, raising ``AssertionError`` naming the case when one exceeds the dtype's tolerance."""
    tol = TOLERANCE[case.dtype]
    errs = errors(case, backend, device, seed)
    bad = {k: v for k, v in errs.items() if not v <= tol}
    if bad:
        raise AssertionError(f"DyT {backend} on {case}: errors {bad} exceed {tol:g} (all: {errs})")
    return errs


CHANNELS = (1, 7, 768, 1000, 4097)


def _shape(rank: int, channels: int, channels_last: bool) -> tuple[int, ...]:
    if channels_last:
        return {2: (3,), 3: (2, 2), 4: (2, 1, 2)}[rank] + (channels,)
    return {2: (3, channels), 3: (2, channels, 3), 4: (2, channels, 2, 2)}[rank]


def standard_cases(dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.bfloat16)) -> list[Case]:
    """2-D / 3-D / 4-D inputs x ``CHANNELS`` x both layouts x ``dtypes``; bias on the even ranks."""
    return [
        Case(_shape(rank, c, last), last, dtype, bias=rank % 2 == 0)
        for dtype in dtypes
        for c in CHANNELS
        for last in (True, False)
        for rank in (2, 3, 4)
    ]


def edge_cases() -> list[Case]:
    """No affine / weight-only, mixed parameter dtype, fp16, saturation, NaN / inf, multi-tile reductions."""
    return [
        Case((4, 33), weight=False, bias=False),
        Case((2, 33, 5), channels_last=False, weight=False),
        Case((6, 768), dtype=torch.bfloat16, param_dtype=torch.float32),
        Case((2, 96, 9), channels_last=False, dtype=torch.bfloat16, param_dtype=torch.float32),
        Case((4, 96), dtype=torch.float16),
        Case((8, 64), x_scale=3e3, alpha=2.0),  # saturating: |alpha x| up to ~1e4
        Case((2, 32, 8), channels_last=False, x_scale=3e3, alpha=2.0),
        Case((8, 64), specials=True),
        Case((2, 16, 8), channels_last=False, specials=True),
        Case((50, 1000)),  # several reduction tiles per program
        Case((20, 768, 3), channels_last=False),
    ]
