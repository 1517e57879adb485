"""How a DyT input is seen by the kernels: a contiguous ``(batch, channels, spatial)`` array.

Channels-last ``(..., C)`` is ``(M, C, 1)`` with ``M`` the product of the leading dims;
channels-first ``(N, C, *)`` is ``(N, C, S)`` with ``S`` the product of the trailing dims.
Both are views of the contiguous input: nothing is transposed or copied.
"""
from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class Layout(NamedTuple):
    """Sizes of the ``(batch, channels, spatial)`` view of a contiguous DyT input."""

    batch: int
    channels: int
    spatial: int


def layout_of(x: Tensor, channels_last: bool) -> Layout:
    """The ``(batch, channels, spatial)`` sizes of ``x`` (whose memory is assumed contiguous)."""
    if channels_last:
        channels = x.shape[-1]
        return Layout(x.numel() // max(channels, 1), channels, 1)
    channels = x.shape[1]
    batch = x.shape[0]
    return Layout(batch, channels, x.numel() // max(batch * channels, 1))

