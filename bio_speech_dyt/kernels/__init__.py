"""DyT kernels behind one entry point, :func:`dyt`.

Backends:

- ``triton``: fused Triton forward/backward (:mod:`.triton_dyt`), for CUDA tensors (CPU tensors
  only under ``TRITON_INTERPRET=1``, for testing);
- ``cpp``: fused C++ forward/backward (:mod:`.cpu_dyt`), for CPU tensors of fp32 / bf16 / fp16,
  compiled on first use and cached;
- ``torch``: chunked, allocation-lean torch ops (:mod:`.chunked`), on any device and dtype;
- ``reference``: the plain autograd definition (:func:`bio_speech_dyt.dyt.dyt_reference`);
- ``auto``: ``triton`` on CUDA tensors of fp32 / bf16 / fp16, ``cpp`` on such CPU tensors (``torch``
  if the C++ kernel cannot be built or loaded, with a one-line warning), ``torch`` elsewhere
  (float64 included).

``triton``, ``cpp`` and ``torch`` run as the custom op ``bsd::dyt_forward`` under ``torch.compile``,
and eagerly through the same bodies without the op's dispatch (:mod:`.op`). The env
var ``BSD_DYT_BACKEND`` forces a backend for every call that asks for ``auto``;
``BSD_DYT_CPU_BACKEND=cpp|torch`` only chooses what ``auto`` runs on CPU (``cpp`` then raises if
the C++ kernel is unavailable rather than falling back). Whatever the backend, the output has
``x``'s dtype and the gradients have the parameters' dtypes.
"""
from __future__ import annotations

import importlib.util
import os

import torch
from torch import Tensor

from bio_speech_dyt.kernels import cpu_dyt
from bio_speech_dyt.kernels.op import dyt_backward, dyt_eager, dyt_forward
from bio_speech_dyt.kernels.reference import dyt_backward_reference, dyt_reference

__all__ = ["dyt", "resolve_backend", "BACKENDS", "ENV_BACKEND", "ENV_CPU_BACKEND", "dyt_forward", "dyt_backward",
           "dyt_eager", "dyt_reference", "dyt_backward_reference"]

BACKENDS = ("auto", "triton", "cpp", "torch", "reference")
ENV_BACKEND = "BSD_DYT_BACKEND"
ENV_CPU_BACKEND = cpu_dyt.ENV_CPU_BACKEND
CPU_BACKENDS = ("cpp", "torch")
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
        if x.is_cuda:
            return "triton" if _HAS_TRITON and x.dtype in _TRITON_DTYPES else "torch"
        return _cpu_backend(x) if x.device.type == "cpu" else "torch"
    return backend


def _cpu_backend(x: Tensor) -> str:
    """What ``auto`` runs on a CPU tensor: ``cpp`` where it can, unless ``BSD_DYT_CPU_BACKEND`` says otherwise."""
    forced = os.environ.get(ENV_CPU_BACKEND)
    if forced and forced not in CPU_BACKENDS:
        raise ValueError(f"{ENV_CPU_BACKEND}={forced!r} is not a CPU DyT backend; choose one of {CPU_BACKENDS}")
    if forced == "torch" or x.dtype not in cpu_dyt.DTYPE_CODES:
        return "torch"
    return "cpp" if cpu_dyt.available() else "torch"  # forced cpp: raises if the kernel cannot be had


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
    if torch.compiler.is_compiling():  # the custom op: one node in the traced graph
        return dyt_forward(x, alpha, weight, bias, channels_last, name)
    return dyt_eager(x, alpha, weight, bias, channels_last, name)
