"""Norm factory shared by every model: ``make_norm("layernorm" | "rmsnorm" | "dyt", dim, ...)``.

Models take a norm kind and ``alpha_init`` at construction (DESIGN: factories, not patches).
``alpha_init`` is a float, or a per-role mapping as the paper's LLaMA recipe uses:
``{"attention": a, "other": b, "final": c}`` (missing roles fall back to ``default`` or 0.5; the
paper's Table 10 gives "other" to the FFN norms and the final norm alike, so set both). Roles:
``attention`` is the norm in front of a sequence mixer (attention; HyenaDNA's Hyena operator;
Caduceus' BiMamba), ``other`` the one in front of an MLP/FFN (and wav2vec 2.0's frontend norms),
``final`` the last norm before the output head. wav2vec 2.0 takes the same mapping through
:func:`bio_speech_dyt.convert.convert_norms`.
"""
from __future__ import annotations

from typing import Mapping, Union

from torch import nn

from bio_speech_dyt.dyt import DyT

NORM_KINDS = ("layernorm", "rmsnorm", "dyt")
ROLES = ("attention", "other", "final")

AlphaInit = Union[float, Mapping[str, float]]


def resolve_alpha(alpha_init: AlphaInit, role: str = "other") -> float:
    """The alpha0 for a norm of ``role`` (attention | other | final)."""
    if role not in ROLES:
        raise ValueError(f"unknown norm role {role!r}; choose one of {ROLES}")
    if isinstance(alpha_init, Mapping):
        unknown = set(alpha_init) - set(ROLES) - {"default"}
        if unknown:
            raise ValueError(f"alpha_init has unknown role(s) {sorted(unknown)}; valid: {ROLES + ('default',)}")
        return float(alpha_init.get(role, alpha_init.get("default", 0.5)))
    return float(alpha_init)


def make_norm(
    kind: str,
    dim: int,
    *,
    alpha_init: AlphaInit = 0.5,
    role: str = "other",
    eps: float = 1e-5,
    bias: bool = True,
    channels_last: bool = True,
    device=None,
    dtype=None,
) -> nn.Module:
    """Build a norm over ``dim`` channels.

    ``bias`` applies to LayerNorm and DyT (RMSNorm never has one; a DyT replacing an RMSNorm
    should be built with ``bias=False``).
    """
    factory = {"device": device, "dtype": dtype}
    if kind == "layernorm":
        if not channels_last:
            raise ValueError("layernorm here normalises the last dimension; use channels_last=True")
        return nn.LayerNorm(dim, eps=eps, bias=bias, **factory)
    if kind == "rmsnorm":
        if not channels_last:
            raise ValueError("rmsnorm here normalises the last dimension; use channels_last=True")
        return nn.RMSNorm(dim, eps=eps, **factory)
    if kind == "dyt":
        return DyT(dim, alpha_init=resolve_alpha(alpha_init, role), channels_last=channels_last, bias=bias, **factory)
    raise ValueError(f"unknown norm {kind!r}; choose one of {NORM_KINDS}")
