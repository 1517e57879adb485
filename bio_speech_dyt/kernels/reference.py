"""References of the DyT op: the forward definition and its analytic backward.

``dyt_reference`` (the plain autograd definition, from :mod:`bio_speech_dyt.dyt`) is what every
backend is tested against in float64; ``dyt_backward_reference`` writes the four gradients out
explicitly, in the same form the fused kernels compute them (it is itself checked against
autograd of ``dyt_reference`` by the tests).
"""
from __future__ import annotations

import torch
from torch import Tensor

from bio_speech_dyt.dyt import dyt_reference

__all__ = ["dyt_reference", "dyt_backward_reference"]


def _reduce_dims(x: Tensor, channels_last: bool) -> tuple[int, ...]:
    """All dims of ``x`` but the channel one."""
    keep = x.dim() - 1 if channels_last else 1
    return tuple(d for d in range(x.dim()) if d != keep)


def _per_channel(p: Tensor, x: Tensor, channels_last: bool) -> Tensor:
    return p if channels_last else p.reshape(p.shape[0], *([1] * (x.dim() - 2)))


def dyt_backward_reference(
    dy: Tensor,
    x: Tensor,
    alpha: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    *,
    channels_last: bool = True,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """``(dx, dalpha, dweight, dbias)`` of ``y = weight * tanh(alpha * x) + bias`` for upstream ``dy``.

    With ``t = tanh(alpha x)`` and ``g = dy * weight``: ``dx = g (1 - t^2) alpha``,
    ``dalpha = sum(g (1 - t^2) x)``, ``dweight = sum(dy t)``, ``dbias = sum(dy)`` (sums over all
    but the channel dim). Computed in the dtype of the inputs; gradients of absent parameters are None.
    """
    dims = _reduce_dims(x, channels_last)
    t = torch.tanh(alpha * x)
    g = dy * _per_channel(weight, x, channels_last) if weight is not None else dy
    dz = g * (1 - t * t)
    dalpha = (dz * x).sum().reshape(alpha.shape)
    dweight = (dy * t).sum(dims) if weight is not None else None
    dbias = dy.sum(dims) if bias is not None else None
    return dz * alpha, dalpha, dweight, dbias
