"""Norm factory shared by every model: ``make_norm("layernorm" | "rmsnorm" | "dyt", dim, ...)``.

Models take a norm kind and ``alpha_init`` at construction (factories, not patches).
alpha0 is set one way in every model of both domains:

- ``alpha_init``: a float, or a per-role mapping as the paper's LLaMA recipe uses:
  ``{"attention": a, "other": b, "final": c}`` (missing roles fall back to ``default`` or 0.5; the
  paper's Table 10 gives "other" to the FFN norms and the final norm alike, so set both). Roles:
  ``attention`` is the norm in front of a sequence mixer (attention; HyenaDNA's Hyena operator;
  Caduceus' BiMamba), ``other`` the one in front of an MLP/FFN (and wav2vec 2.0's frontend norms),
  ``final`` the last norm before the output head;
- ``alpha_overrides``: ``{module-path pattern: alpha0}`` (fnmatch, first match wins) over the
  role's value, e.g. ``{"layers.1.norm2": 1.0}`` — applied by :func:`alpha_for` (when
  converting, e.g. wav2vec 2.0 through :func:`bio_speech_dyt.convert.convert_norms`) or
  :func:`apply_alpha_overrides` (after a model built its DyT layers).
"""
from __future__ import annotations

import fnmatch
from typing import Literal, Mapping, Union

import torch
from torch import nn

from bio_speech_dyt.dyt import DyT
from bio_speech_dyt.scaled_dyt import ScaledDyT

NormKind = Literal["layernorm", "rmsnorm", "dyt"]
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


def first_match(path: str, patterns: Mapping[str, object] | None):
    """The value of the first fnmatch pattern in ``patterns`` that matches module ``path``, else None."""
    return next((value for pattern, value in (patterns or {}).items() if fnmatch.fnmatchcase(path, pattern)), None)


def alpha_for(path: str, role: str, alpha_init: AlphaInit, overrides: Mapping[str, float] | None = None) -> float:
    """alpha0 of the norm at module ``path``: the first matching override, else its role's."""
    value = first_match(path, overrides)
    return float(value) if value is not None else resolve_alpha(alpha_init, role)


def apply_alpha_overrides(model: nn.Module, overrides: Mapping[str, float] | None) -> list[str]:
    """Re-initialise the alpha of every DyT whose path matches a pattern; returns the paths set.
    A pattern that matches no DyT is an error (a typo would otherwise be silently ignored)."""
    if not overrides:
        return []
    dyts = [(name, m) for name, m in model.named_modules() if isinstance(m, DyT)]
    unused = [p for p in overrides if not any(fnmatch.fnmatchcase(n, p) for n, _ in dyts)]
    if unused:
        raise ValueError(f"alpha_overrides pattern(s) {unused} match no DyT layer; DyT paths: "
                         f"{', '.join(n for n, _ in dyts[:8])}{' ...' if len(dyts) > 8 else ''}")
    done = []
    with torch.no_grad():
        for name, m in dyts:
            value = first_match(name, overrides)
            if value is not None:
                m.alpha_init = float(value)
                m.alpha.fill_(float(value))
                done.append(name)
    return done


def make_norm(
    kind: str,
    dim: int,
    *,
    alpha_init: AlphaInit = 0.5,
    role: str = "other",
    eps: float = 1e-5,
    bias: bool = True,
    channels_last: bool = True,
    input_scale: str = "none",
    device=None,
    dtype=None,
) -> nn.Module:
    """Build a norm over ``dim`` channels.

    ``bias`` applies to LayerNorm and DyT (RMSNorm never has one; a DyT replacing an RMSNorm
    should be built with ``bias=False``). ``input_scale`` (DyT only): ``none``, or ``batch`` /
    ``token`` for the :class:`~bio_speech_dyt.scaled_dyt.ScaledDyT` ablation.
    """
    factory = {"device": device, "dtype": dtype}
    if input_scale != "none" and kind != "dyt":
        raise ValueError(f"input_scale {input_scale!r} applies to DyT only, not to {kind!r}")
    if kind == "layernorm":
        if not channels_last:
            raise ValueError("layernorm here normalises the last dimension; use channels_last=True")
        return nn.LayerNorm(dim, eps=eps, bias=bias, **factory)
    if kind == "rmsnorm":
        if not channels_last:
            raise ValueError("rmsnorm here normalises the last dimension; use channels_last=True")
        return nn.RMSNorm(dim, eps=eps, **factory)
    if kind == "dyt":
        dyt = dict(alpha_init=resolve_alpha(alpha_init, role), channels_last=channels_last, bias=bias, **factory)
        if input_scale != "none":
            return ScaledDyT(dim, scope=input_scale, eps=eps, **dyt)
        return DyT(dim, **dyt)
    raise ValueError(f"unknown norm {kind!r}; choose one of {NORM_KINDS}")
