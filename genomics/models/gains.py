"""Learnable scalar gains shared by the DNA models (``embed_gain``, ``residual_gain_init``)."""
from __future__ import annotations

import torch
from torch import Tensor, nn


def scalar_gain(init: float | None) -> nn.Parameter | None:
    """A learnable 0-dim gain starting at ``init`` (scalars get no weight decay), or None."""
    return None if init is None else nn.Parameter(torch.tensor(float(init)))


def gained(x: Tensor, gain: nn.Parameter | None) -> Tensor:
    """``x * gain``; ``x`` itself without a gain."""
    return x if gain is None else x * gain
