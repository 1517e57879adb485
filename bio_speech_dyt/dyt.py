"""DyT — Dynamic Tanh, ``weight * tanh(alpha * x) + bias`` (Zhu et al., CVPR 2025).

A drop-in replacement for LayerNorm / RMSNorm: one learnable scalar ``alpha`` per layer,
per-channel ``weight`` (init 1) and ``bias`` (init 0). No mean, no variance, no eps.

``dyt_reference`` is the plain definition every kernel is tested against; the functional form
is :func:`bio_speech_dyt.kernels.dyt` (also exported as ``bio_speech_dyt.dyt``); ``DyT`` is the module.
"""
from __future__ import annotations

import numbers
from typing import Sequence

import torch
from torch import Tensor, nn

__all__ = ["DyT", "dyt_reference"]


def _channel_view(p: Tensor, x: Tensor, channels_last: bool) -> Tensor:
    """Shape a per-channel parameter to broadcast against ``x``."""
    if channels_last:
        return p
    # channels-first (N, C, *): C is dim 1; parameters are 1-D of size C
    return p.reshape(p.shape[0], *([1] * (x.dim() - 2)))


def dyt_reference(
    x: Tensor, alpha: Tensor, weight: Tensor | None, bias: Tensor | None = None, *, channels_last: bool = True
) -> Tensor:
    """The definition, written plainly: ``weight * tanh(alpha * x) + bias``."""
    y = torch.tanh(alpha * x)
    if weight is not None:
        y = y * _channel_view(weight, x, channels_last)
    if bias is not None:
        y = y + _channel_view(bias, x, channels_last)
    return y


class DyT(nn.Module):
    """Dynamic Tanh normalisation layer.

    Args:
        normalized_shape: number of channels ``C`` (int, or a 1-tuple as LayerNorm takes).
        alpha_init: initial value of the scalar ``alpha`` (0.5 for speech and DNA models).
        channels_last: ``True`` for ``(..., C)`` inputs, ``False`` for ``(N, C, *)`` feature maps.
        bias: learn a per-channel bias (``False`` for RMSNorm-style use).
        elementwise_affine: learn ``weight`` (and ``bias``); ``False`` mirrors a norm without affine.
        backend: kernel backend (``auto`` | ``triton`` | ``torch`` | ``reference``).
    """

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        alpha_init: float = 0.5,
        channels_last: bool = True,
        bias: bool = True,
        elementwise_affine: bool = True,
        backend: str = "auto",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (int(normalized_shape),)
        normalized_shape = tuple(int(s) for s in normalized_shape)
        if len(normalized_shape) != 1:
            raise ValueError(f"DyT normalises one channel dimension; got normalized_shape={normalized_shape}")
        factory = {"device": device, "dtype": dtype}
        self.normalized_shape = normalized_shape
        self.alpha_init = float(alpha_init)
        self.channels_last = channels_last
        self.elementwise_affine = elementwise_affine
        self.backend = backend
        self.alpha = nn.Parameter(torch.full((1,), self.alpha_init, **factory))
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(normalized_shape, **factory))
            self.bias = nn.Parameter(torch.zeros(normalized_shape, **factory)) if bias else None
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.alpha.fill_(self.alpha_init)
            if self.weight is not None:
                self.weight.fill_(1.0)
            if self.bias is not None:
                self.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        c = self.normalized_shape[0]
        dim = -1 if self.channels_last else 1
        if x.shape[dim] != c:
            raise ValueError(f"DyT expects {c} channels in dim {dim}, got input of shape {tuple(x.shape)}")
        from bio_speech_dyt import kernels  # kernels import this module for the reference

        return kernels.dyt(x, self.alpha, self.weight, self.bias, channels_last=self.channels_last, backend=self.backend)

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, alpha_init={self.alpha_init}, channels_last={self.channels_last}, "
            f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}"
        )
