"""Mamba block in plain PyTorch with ``mamba_ssm.modules.mamba_simple.Mamba``'s parameter
names, shapes and initialisation, so state dicts load both ways.

in_proj -> (x, z); x -> causal depthwise conv -> SiLU -> x_proj -> (dt, B, C);
dt -> dt_proj (+ bias, softplus); selective scan with A = -exp(A_log) and skip D, gated by
SiLU(z); out_proj. On CUDA the scan (and the conv, with ``causal-conv1d``) use the fused
kernels of the ``cuda`` extra when installed (see :mod:`genomics.models.selective_scan`).
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genomics.models.selective_scan import selective_scan


@functools.lru_cache(maxsize=None)
def _causal_conv1d_kernel() -> Callable | None:
    try:
        from causal_conv1d import causal_conv1d_fn
    except Exception:  # not installed, or without its CUDA build
        return None
    return causal_conv1d_fn


class Mamba(nn.Module):
    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
    ):
        super().__init__()
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1, bias=conv_bias)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self._init_dt(dt_init, dt_scale, dt_min, dt_max, dt_init_floor)

    def _init_dt(self, dt_init: str, dt_scale: float, dt_min: float, dt_max: float, dt_init_floor: float) -> None:
        """dt_proj weight ~ U(+-dt_rank^-0.5 * dt_scale) (or constant); its bias is the inverse
        softplus of dt ~ LogUniform(dt_min, dt_max), so softplus(bias) starts in that range."""
        std = self.dt_rank**-0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, std)
        elif dt_init == "random":
            nn.init.uniform_(self.dt_proj.weight, -std, std)
        else:
            raise ValueError(f"dt_init must be 'constant' or 'random', got {dt_init!r}")
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.dt_proj.bias._no_reinit = True  # model-level init keeps it (mamba_ssm convention)

    def no_weight_decay(self) -> set[str]:
        return {"A_log", "D"}

    def _conv(self, x: Tensor) -> Tensor:
        """Causal depthwise conv + SiLU over (B, d_inner, L)."""
        kernel = _causal_conv1d_kernel() if x.is_cuda else None
        if kernel is not None:
            return kernel(x, self.conv1d.weight.squeeze(1), self.conv1d.bias, activation="silu")
        return F.silu(self.conv1d(x)[..., : x.shape[-1]])

    def forward(self, hidden_states: Tensor) -> Tensor:
        """(B, L, d_model) -> (B, L, d_model)."""
        xz = self.in_proj(hidden_states).transpose(1, 2)  # (B, 2 d_inner, L)
        x, z = xz.chunk(2, dim=1)
        x = self._conv(x)
        dt, B, C = self.x_proj(x.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = (dt @ self.dt_proj.weight.t()).transpose(1, 2)  # bias goes in the scan, in fp32
        y = selective_scan(
            x, dt, -torch.exp(self.A_log.float()), B.transpose(1, 2), C.transpose(1, 2), self.D.float(), z=z,
            delta_bias=self.dt_proj.bias.float(), delta_softplus=True,
        )
        return self.out_proj(y.transpose(1, 2))
