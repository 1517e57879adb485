"""DyT kernels behind one entry point, :func:`dyt`.

Backends: ``reference`` (plain autograd), ``torch`` (CPU-tuned path), ``triton`` (fused
forward/backward). ``auto`` = Triton on CUDA tensors, the fastest measured path on CPU.
The env var ``BSD_DYT_BACKEND`` forces a backend for every call that asks for ``auto``.
"""
from __future__ import annotations

import os

from torch import Tensor

from bio_speech_dyt.dyt import dyt_reference

BACKENDS = ("auto", "triton", "torch", "reference")


def dyt(
    x: Tensor,
    alpha: Tensor,
    weight: Tensor | None,
    bias: Tensor | None = None,
    *,
    channels_last: bool = True,
    backend: str = "auto",
) -> Tensor:
    if backend not in BACKENDS:
        raise ValueError(f"unknown DyT backend {backend!r}; choose one of {BACKENDS}")
    if backend == "auto":
        backend = os.environ.get("BSD_DYT_BACKEND", "auto")
    # Placeholder dispatch until the fused kernels land: every backend computes the reference.
    return dyt_reference(x, alpha, weight, bias, channels_last=channels_last)
