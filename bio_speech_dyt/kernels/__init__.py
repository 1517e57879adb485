"""DyT kernels behind one entry point, :func:`dyt`.

Backends:

- ``triton``: fused Triton forward/backward (:mod:`.triton_dyt`), for CUDA tensors (CPU tensors
  only under ``TRITON_INTERPRET=1``, for testing);
- ``torch``: chunked, allocation-lean torch ops (:mod:`.chunked`), the fast CPU path;
- ``reference``: the plain autograd definition (:func:`bio_speech_dyt.dyt.dyt_reference`);
- ``auto``: ``triton`` on CUDA tensors of fp32 / bf16 / fp16, ``torch`` elsewhere (float64 included).

``triton`` and ``torch`` run as the custom op ``bsd::dyt_forward`` (:mod:`.op`). The env var
``BSD_DYT_BACKEND`` forces a backend for every call that asks for ``auto``. Whatever the backend,
the output has ``x``'s dtype and the gradients have the parameters' dtypes.
"""
from __future__ import annotations

import importlib.util
import os

import torch
from torch import Tensor

from bio_speech_dyt.kernels.op import dyt_backward, dyt_forward
from bio_speech_dyt.kernels.reference import dyt_backward_reference, dyt_reference

__all__ = ["dyt", "resolve_backend", "BACKENDS", "ENV_BACKEND", "dyt_forward", "dyt_backward",
           "dyt_reference", "dyt_backward_reference"]

BACKENDS = ("auto", "triton", "torch", "reference")
ENV_BACKEND = "BSD_DYT_BACKEND"
_HAS_TRITON = importlib.util.find_spec("triton") is not None
_TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def resolve_backend(backend: str, x: Tensor) -> str:
    """The concrete backend a call with ``backend`` on ``x`` runs (``auto`` -> env var -> device)."""
    if backend == "auto":
        backend = os.environ.get(ENV_BACKEND) or "auto"
        if backend not in BACKENDS:
            raise ValueError(f"{ENV_BACKEND}={backend!r} is not a DyT backend; choose one of {BACKENDS}")
    elif backend not in BACKENDS:
        raise ValueError(f"unknown DyT backend {backend!r}; choose one of {BACKENDS}")
    if backend == "auto":
        return "triton" if x.is_cuda and _HAS_TRITON and x.dtype in _TRITON_DTYPES else "torch"
    return backend


def _check_args(x: Tensor, alpha: Tensor, weight: Tensor | None, bias: Tensor | None, channels_last: bool) -> None:
    if not channels_last and x.dim() < 2:
        raise ValueError(f"channels-first DyT needs an (N, C, *) input; got shape {tuple(x.shape)}")
    channels = x.shape[-1] if channels_last else x.shape[1]
    if alpha.numel() != 1:
        raise ValueError(f"DyT alpha must have one element; got shape {tuple(alpha.shape)}")
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and tuple(p.shape) != (channels,):
            raise ValueError(f"DyT {name} must have shape ({channels},) for input {tuple(x.shape)}; got {tuple(p.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"DyT needs a floating-point input; got {x.dtype}")


def dyt(
    x: Tensor,
    alpha: Tensor,
    weight: Tensor | None,
    bias: Tensor | None = None,
    *,
    channels_last: bool = True,
    backend: str = "auto",
) -> Tensor:
    """``weight * tanh(alpha * x) + bias`` over the channel dim (last, or dim 1 if not ``channels_last``).

    ``alpha``: a 1-element tensor; ``weight`` / ``bias``: ``(C,)`` or None. Any float dtype for
    ``x`` (math in fp32); output in ``x.dtype``.
    """
    _check_args(x, alpha, weight, bias, channels_last)
    name = resolve_backend(backend, x)
    if name == "reference":
        return dyt_reference(x, alpha, weight, bias, channels_last=channels_last).to(x.dtype)
    return dyt_forward(x, alpha, weight, bias, channels_last, name)
