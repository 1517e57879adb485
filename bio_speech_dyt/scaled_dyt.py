"""ScaledDyT — a diagnostic ablation beyond the paper: DyT fed its input divided by an RMS statistic.

RMSNorm differs from DyT in two ways: it divides by the input's scale at every step (so its gain
follows the residual stream as training grows or shrinks it, where DyT's ``alpha`` has to be
learned), and it does so per token. ``ScaledDyT`` puts one of them back at a time, so an ablation
can tell which one a DyT-vs-RMSNorm gap is:

- ``scope="batch"``: divide by one scalar per call, the RMS over every element of the input
  (padding included): the scale tracking, without per-token normalisation;
- ``scope="token"``: divide each token by its own RMS over the channels (RMSNorm's statistic),
  then DyT.

With ``batch`` a sample's output depends on the batch it is in (as BatchNorm's does in training
mode): right for a diagnostic, not for a deployed model. Gradients flow through the statistic, as
through RMSNorm's. With a unit-RMS input, alpha0 ~ 1 keeps the output near RMSNorm's unit scale.
No library has this layer (it exists for the parity study's ablation), hence written here.
"""
from __future__ import annotations

import torch
from torch import Tensor

from bio_speech_dyt.dyt import DyT

__all__ = ["ScaledDyT", "SCOPES"]

SCOPES = ("batch", "token")


class ScaledDyT(DyT):
    """``weight * tanh(alpha * x / rms(x)) + bias``, ``rms`` over the whole input (``batch``) or per
    token (``token``); the other arguments are :class:`~bio_speech_dyt.dyt.DyT`'s."""

    def __init__(self, normalized_shape, *, scope: str = "batch", eps: float = 1e-5, **kwargs) -> None:
        if scope not in SCOPES:
            raise ValueError(f"ScaledDyT scope {scope!r}: choose one of {SCOPES}")
        super().__init__(normalized_shape, **kwargs)
        self.scope = scope
        self.eps = float(eps)

    def scale_input(self, x: Tensor) -> Tensor:
        """``x`` divided by its RMS (over everything, or over the channels of each token)."""
        if self.scope == "batch":
            ms = x.pow(2).mean()
        else:
            ms = x.pow(2).mean(dim=-1 if self.channels_last else 1, keepdim=True)
        return x * torch.rsqrt(ms + self.eps)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(self.scale_input(x))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scope={self.scope}, eps={self.eps}"
