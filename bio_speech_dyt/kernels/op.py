"""DyT as torch custom ops (``bsd::dyt_forward`` / ``bsd::dyt_backward``) with autograd.

Registered with :func:`torch.library.custom_op`, fake (meta) implementations and
:func:`torch.library.register_autograd`, so ``torch.compile(fullgraph=True)`` traces models with
DyT layers without graph breaks and DDP / FSDP2 see ordinary parameter gradients. The ops take
the backend by name (``triton`` | ``cpp`` | ``torch``) and call that module's ``forward`` / ``backward``.
Only ``x`` and the parameters are saved for backward (``tanh(alpha x)`` is recomputed).
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Optional

import torch
from torch import Tensor

KERNEL_BACKENDS = {
    "triton": "bio_speech_dyt.kernels.triton_dyt",
    "cpp": "bio_speech_dyt.kernels.cpu_dyt",
    "torch": "bio_speech_dyt.kernels.chunked",
}


def _impl(backend: str) -> ModuleType:
    """The module implementing ``backend`` (imported on first use: Triton only when asked for)."""
    try:
        return importlib.import_module(KERNEL_BACKENDS[backend])
    except KeyError:
        raise ValueError(f"no DyT kernel backend {backend!r}; choose one of {tuple(KERNEL_BACKENDS)}") from None


def _absent(x: Tensor) -> Tensor:
    """Placeholder output for the gradient of an absent parameter (custom ops cannot return None)."""
    return x.new_empty(0)


@torch.library.custom_op("bsd::dyt_forward", mutates_args=())
def dyt_forward(
    x: Tensor, alpha: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], channels_last: bool, backend: str
) -> Tensor:
    """``weight * tanh(alpha * x) + bias`` in ``x.dtype``; contiguous output."""
    x = x.contiguous()
    if x.numel() == 0:
        return torch.empty_like(x)
    return _impl(backend).forward(x, alpha, weight, bias, channels_last)


@dyt_forward.register_fake
def _dyt_forward_fake(x, alpha, weight, bias, channels_last, backend):
    return x.new_empty(x.shape)


@torch.library.custom_op("bsd::dyt_backward", mutates_args=())
def dyt_backward(
    dy: Tensor,
    x: Tensor,
    alpha: Tensor,
    weight: Optional[Tensor],
    bias: Optional[Tensor],
    channels_last: bool,
    backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(dx, dalpha, dweight, dbias)``; gradients of absent parameters are empty placeholders.

    ``bias`` is only read for its presence and dtype (``dbias`` does not depend on it).
    """
    x, dy = x.contiguous(), dy.contiguous()
    if x.numel() == 0:
        grads = (
            torch.empty_like(x),
            torch.zeros_like(alpha),
            torch.zeros_like(weight) if weight is not None else None,
            torch.zeros_like(bias) if bias is not None else None,
        )
    else:
        grads = _impl(backend).backward(dy, x, alpha, weight, bias, channels_last)
    return tuple(g if g is not None else _absent(x) for g in grads)


@dyt_backward.register_fake
def _dyt_backward_fake(dy, x, alpha, weight, bias, channels_last, backend):
    return (
        x.new_empty(x.shape),
        alpha.new_empty(alpha.shape),
        weight.new_empty(weight.shape) if weight is not None else _absent(x),
        bias.new_empty(bias.shape) if bias is not None else _absent(x),
    )


def _setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
    x, alpha, weight, bias, channels_last, backend = inputs
    ctx.save_for_backward(x, alpha, weight, bias)
    ctx.channels_last, ctx.backend = channels_last, backend


def _backward(ctx: Any, dy: Tensor) -> tuple[Tensor | None, ...]:
    x, alpha, weight, bias = ctx.saved_tensors
    dx, dalpha, dweight, dbias = dyt_backward(dy, x, alpha, weight, bias, ctx.channels_last, ctx.backend)
    return (
        dx,
        dalpha,
        dweight if weight is not None else None,
        dbias if bias is not None else None,
        None,
        None,
    )


dyt_forward.register_autograd(_backward, setup_context=_setup_context)
