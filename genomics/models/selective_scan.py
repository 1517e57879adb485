"""Mamba's selective scan: ``h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t``, ``y_t = C_t h_t + D u_t``,
gated by ``silu(z)``; shapes and arguments as ``mamba_ssm``'s ``selective_scan_fn``:
u, delta, z: (batch, dim, L); A: (dim, N); B, C: (batch, N, L); D, delta_bias: (dim,).

``selective_scan_ref`` is the sequential definition (same math as mamba_ssm's reference).
``selective_scan`` is what models call: mamba_ssm's CUDA kernel for CUDA tensors when the
``cuda`` extra is installed, otherwise a chunked parallel scan in plain PyTorch whose
backward is the adjoint (reverse) recurrence, so autograd keeps only two (B, L, dim, N) tensors.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def _acc(t: Tensor) -> Tensor:
    """Accumulation dtype: float32 for half types and float32, float64 kept (for references)."""
    return t if t.dtype == torch.float64 else t.float()


def _discretize(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, delta_bias: Tensor | None, delta_softplus: bool):
    """Return ``dt * A`` (log decay) and ``dt * B * u`` as (batch, L, dim, N) tensors."""
    delta = _acc(delta)
    if delta_bias is not None:
        delta = delta + _acc(delta_bias)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    dt = delta.transpose(1, 2)  # (b, l, d)
    log_a = dt.unsqueeze(-1) * _acc(A)
    b = (dt * _acc(u).transpose(1, 2)).unsqueeze(-1) * _acc(B).transpose(1, 2).unsqueeze(2)
    return log_a, b


def _output(h: Tensor, u: Tensor, C: Tensor, D: Tensor | None, z: Tensor | None) -> Tensor:
    """``y = C h (+ D u) (* silu(z))`` back in (batch, dim, L) and the input dtype."""
    y = torch.einsum("bldn,bnl->bdl", h, _acc(C))
    if D is not None:
        y = y + _acc(u) * _acc(D)[:, None]
    if z is not None:
        y = y * F.silu(_acc(z))
    return y.to(u.dtype)


def selective_scan_ref(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None, z: Tensor | None = None,
    delta_bias: Tensor | None = None, delta_softplus: bool = False,
) -> Tensor:
    """Sequential reference: one state update per position."""
    log_a, b = _discretize(u, delta, A, B, delta_bias, delta_softplus)
    a = torch.exp(log_a)
    h = b.new_zeros(b.shape[0], *b.shape[2:])
    states = []
    for t in range(b.shape[1]):
        h = a[:, t] * h + b[:, t]
        states.append(h)
    return _output(torch.stack(states, dim=1), u, C, D, z)


def linear_scan(a: Tensor, b: Tensor, reverse: bool = False, chunk: int | None = None) -> Tensor:
    """``h_t = a_t * h_{t-1} + b_t`` along dim 1 from a zero state (``reverse``:
    ``h_t = a_t * h_{t+1} + b_t`` from the end), without autograd.

    Chunked, all chunks at once: pass 1 runs every chunk from a zero state keeping only its
    final state and total decay; a carry pass over the chunks gives each chunk's true entering
    state; pass 2 reruns the chunks from those states writing ``h``. ``2 * chunk + L / chunk``
    vectorised steps instead of ``L``, and only ``h`` is written at full size.
    """
    n, length = a.shape[:2]
    chunk = chunk or max(1, math.isqrt(length))
    pad = -length % chunk
    if pad:  # zero b past the end keeps those states zero, in both directions
        widths = (0,) * (2 * (a.dim() - 2)) + (0, pad)
        a, b = F.pad(a, widths), F.pad(b, widths)
    a = a.reshape(n, -1, chunk, *a.shape[2:])
    b = b.reshape(n, -1, chunk, *b.shape[2:])
    steps = range(chunk - 1, -1, -1) if reverse else range(chunk)
    state = torch.zeros_like(b[:, :, 0])
    decay = torch.ones_like(state)
    for t in steps:  # pass 1
        state = torch.addcmul(b[:, :, t], a[:, :, t], state)
        decay.mul_(a[:, :, t])
    entering = torch.zeros_like(state)
    for c in range(a.shape[1] - 2, -1, -1) if reverse else range(1, a.shape[1]):  # carry
        prev = c + 1 if reverse else c - 1
        torch.addcmul(state[:, prev], decay[:, prev], entering[:, prev], out=entering[:, c])
    h = torch.empty_like(b)
    state = entering
    for t in steps:  # pass 2
        torch.addcmul(b[:, :, t], a[:, :, t], state, out=h[:, :, t])
        state = h[:, :, t]
    return h.reshape(n, -1, *h.shape[3:])[:, :length]


class _LinearRecurrence(torch.autograd.Function):
    """``h = linear_scan(exp(log_a), b)``; backward runs the adjoint recurrence in reverse."""

    @staticmethod
    def forward(ctx, log_a: Tensor, b: Tensor) -> Tensor:
        a = torch.exp(log_a)
        h = linear_scan(a, b)
        ctx.save_for_backward(a, h)
        return h

    @staticmethod
    def backward(ctx, grad_h: Tensor):
        a, h = ctx.saved_tensors
        # adjoint: s_t = g_t + a_{t+1} s_{t+1}
        coeff = torch.zeros_like(a)
        coeff[:, :-1] = a[:, 1:]
        s = linear_scan(coeff, grad_h.contiguous(), reverse=True)
        grad_log_a = s * a  # d h_t / d log a_t = a_t h_{t-1}
        grad_log_a[:, 1:] *= h[:, :-1]
        grad_log_a[:, 0] = 0
        return grad_log_a, s


def selective_scan_chunked(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None, z: Tensor | None = None,
    delta_bias: Tensor | None = None, delta_softplus: bool = False,
) -> Tensor:
    """Pure-PyTorch selective scan, any device: same result as :func:`selective_scan_ref`."""
    log_a, b = _discretize(u, delta, A, B, delta_bias, delta_softplus)
    return _output(_LinearRecurrence.apply(log_a, b), u, C, D, z)


@functools.lru_cache(maxsize=None)
def _mamba_ssm_scan() -> Callable | None:
    """mamba_ssm's fused CUDA selective scan, if the ``cuda`` extra is installed."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # not installed, or installed without its CUDA build
        return None
    return selective_scan_fn


def selective_scan(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None, z: Tensor | None = None,
    delta_bias: Tensor | None = None, delta_softplus: bool = False,
) -> Tensor:
    """The selective scan models call: mamba_ssm's kernel on CUDA if present, else chunked."""
    if u.is_cuda and (kernel := _mamba_ssm_scan()) is not None:
        return kernel(u, delta, A, B, C, D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)
    return selective_scan_chunked(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
