"""``convert_norms``: swap the norms of an existing model for DyT, in place.

Recognised: ``torch.nn.LayerNorm`` / ``torch.nn.RMSNorm``; fairseq2's ``StandardLayerNorm`` /
``RMSNorm`` (the replacement still is a ``fairseq2.nn.LayerNorm``); mamba_ssm-style
``RMSNorm`` / ``LayerNorm`` (duck-typed: their ``forward`` takes ``residual``/``prenorm``;
mamba_ssm itself cannot be imported without CUDA); opt-in GroupNorm / BatchNorm.

A block with ``fused_add_norm=True`` calls its norm's *weights* through a fused Triton
function and never calls the norm module, so a swapped module would be silently bypassed
(how the official DNA patch left Caduceus untouched). Such blocks are switched to their
unfused path (``fused_add_norm="unfuse"``, default) or rejected (``"error"``).
"""
from __future__ import annotations

import dataclasses
import fnmatch
import inspect
import sys
from typing import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from bio_speech_dyt.dyt import DyT
from bio_speech_dyt.norms import AlphaInit, alpha_for, first_match
from bio_speech_dyt.scaled_dyt import SCOPES, ScaledDyT

__all__ = ["convert_norms", "classify_norm", "ConversionReport", "SwapRecord", "FusedAddNormError", "MambaStyleDyT"]

KINDS = ("layernorm", "rmsnorm", "groupnorm", "batchnorm")


class FusedAddNormError(RuntimeError):
    """A fused add-norm block would bypass the swapped norm."""


class MambaStyleDyT(DyT):
    """DyT with mamba_ssm's norm call signature: ``norm(x, residual=None, prenorm=False,
    residual_in_fp32=False)`` adds the residual first and optionally returns it."""

    def forward(self, x: Tensor, residual: Tensor | None = None, prenorm: bool = False, residual_in_fp32: bool = False):
        if residual is not None:
            x = x + residual
        out = super().forward(x)
        if not prenorm:
            return out
        return out, (x.float() if residual_in_fp32 else x)


def _fairseq2_dyt_class(base: type = DyT) -> type:
    """``base`` (DyT or ScaledDyT) that also satisfies fairseq2's ``LayerNorm`` interface (built on
    first need: fairseq2 is imported only for fairseq2 models)."""
    if base not in _FAIRSEQ2_DYT:
        from fairseq2.nn import LayerNorm as Fs2LayerNorm

        _FAIRSEQ2_DYT[base] = type(f"Fairseq2{base.__name__}", (base, Fs2LayerNorm),
                                   {"__doc__": f"{base.__name__} usable wherever fairseq2 expects a "
                                               "``fairseq2.nn.LayerNorm``."})
    return _FAIRSEQ2_DYT[base]


_FAIRSEQ2_DYT: dict[type, type] = {}


@dataclasses.dataclass
class SwapRecord:
    path: str
    old_class: str
    shape: tuple[int, ...]
    kind: str
    role: str
    alpha_init: float
    input_scale: str | None = None  # ScaledDyT's scope, None for a plain DyT


@dataclasses.dataclass
class ConversionReport:
    swapped: list[SwapRecord] = dataclasses.field(default_factory=list)
    unfused: list[str] = dataclasses.field(default_factory=list)
    kept: list[str] = dataclasses.field(default_factory=list)  # norms seen but left alone

    def __len__(self) -> int:
        return len(self.swapped)

    def __iter__(self):
        return iter(self.swapped)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.swapped:
            out[r.old_class] = out.get(r.old_class, 0) + 1
        return out

    def to_dict(self) -> dict:
        return {
            "num_swapped": len(self.swapped),
            "counts": self.counts(),
            "swapped": [dataclasses.asdict(r) for r in self.swapped],
            "unfused": list(self.unfused),
            "kept": list(self.kept),
        }

    def table(self) -> str:
        lines = [f"DyT conversion: {len(self.swapped)} norm(s) swapped"]
        for r in self.swapped:
            scaled = f" ScaledDyT({r.input_scale})" if r.input_scale else ""
            lines.append(f"  {r.path:<55} {r.old_class:<18} {str(r.shape):<10} {r.role:<9} alpha0={r.alpha_init:g}{scaled}")
        for p in self.unfused:
            lines.append(f"  fused add-norm switched off: {p}")
        for p in self.kept:
            lines.append(f"  kept: {p}")
        return "\n".join(lines)


def _is_mamba_style(module: nn.Module) -> bool:
    """mamba_ssm's Triton RMSNorm/LayerNorm: ``forward(x, residual=None, prenorm=False, ...)``."""
    if type(module).__name__ not in ("RMSNorm", "LayerNorm") or not hasattr(module, "weight"):
        return False
    try:
        params = inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False
    return "residual" in params and "prenorm" in params


def classify_norm(module: nn.Module) -> tuple[str | None, str]:
    """Return ``(kind, flavour)``; flavour is torch | fairseq2 | mamba."""
    if isinstance(module, DyT):
        return None, ""
    if _is_mamba_style(module):
        return ("rmsnorm" if type(module).__name__ == "RMSNorm" else "layernorm"), "mamba"
    if "fairseq2.nn" in sys.modules:  # a model holding fairseq2 modules has imported it
        from fairseq2.nn import RMSNorm as Fs2RMSNorm
        from fairseq2.nn import StandardLayerNorm

        if isinstance(module, StandardLayerNorm):
            return "layernorm", "fairseq2"
        if isinstance(module, Fs2RMSNorm):
            return "rmsnorm", "fairseq2"
    if isinstance(module, nn.LayerNorm):
        return "layernorm", "torch"
    if isinstance(module, nn.RMSNorm):
        return "rmsnorm", "torch"
    if isinstance(module, nn.GroupNorm):
        return "groupnorm", "torch"
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return "batchnorm", "torch"
    return None, ""


def default_role(path: str, is_final: bool) -> str:
    """attention-block norms (paths naming attn/attention), the final norm, or other."""
    if is_final:
        return "final"
    leaf = path.lower()
    return "attention" if ("attn" in leaf or "attention" in leaf) else "other"


def _make_dyt(old: nn.Module, kind: str, flavour: str, alpha0: float, copy_affine: bool,
              scope: str | None = None) -> DyT:
    ref = next(iter(old.parameters()), None)
    factory = {"device": ref.device, "dtype": ref.dtype} if ref is not None else {}
    weight = getattr(old, "weight", None)
    bias = getattr(old, "bias", None)
    affine = weight is not None
    if kind in ("layernorm", "rmsnorm"):
        shape = tuple(getattr(old, "normalized_shape", None) or tuple(weight.shape))
        if len(shape) != 1:
            raise ValueError(f"DyT replaces norms over one dimension; {type(old).__name__} normalises {shape}")
        channels, channels_last = shape[0], True
    else:  # group/batch norm over (N, C, *)
        channels = old.num_channels if kind == "groupnorm" else old.num_features
        channels_last = False
        affine = getattr(old, "affine", affine)
    extra = {"scope": scope} if scope is not None else {}
    if flavour == "mamba":
        cls = MambaStyleDyT
    elif flavour == "fairseq2":
        cls = _fairseq2_dyt_class(ScaledDyT if scope else DyT)
    else:
        cls = ScaledDyT if scope else DyT
    new = cls(channels, alpha_init=alpha0, channels_last=channels_last, bias=bias is not None,
              elementwise_affine=affine, **extra, **factory)
    if copy_affine and affine:
        with torch.no_grad():
            new.weight.copy_(weight.reshape(-1))
            if bias is not None and new.bias is not None:
                new.bias.copy_(bias.reshape(-1))
    return new


def _excluded(path: str, exclude) -> bool:
    if exclude is None:
        return False
    if callable(exclude):
        return bool(exclude(path))
    if isinstance(exclude, str):
        exclude = (exclude,)
    return any(fnmatch.fnmatchcase(path, pat) for pat in exclude)


def convert_norms(
    model: nn.Module,
    alpha_init: AlphaInit = 0.5,
    kinds: Iterable[str] = ("layernorm", "rmsnorm"),
    exclude: Iterable[str] | Callable[[str], bool] | str | None = None,
    *,
    fused_add_norm: str = "unfuse",
    copy_affine: bool = True,
    role_fn: Callable[[str, bool], str] = default_role,
    alpha_overrides: Mapping[str, float] | None = None,
    input_scale: Mapping[str, str] | None = None,
) -> tuple[nn.Module, ConversionReport]:
    """Replace the norms of ``model`` by DyT in place.

    Args:
        alpha_init: alpha0, or per role ``{"attention": a, "other": b, "final": c}``.
        kinds: which norm kinds to replace (layernorm, rmsnorm, groupnorm, batchnorm).
        exclude: module paths to keep (fnmatch patterns) or a predicate on the path.
        fused_add_norm: ``"unfuse"`` switches blocks with ``fused_add_norm=True`` to their
            unfused path; ``"error"`` raises :class:`FusedAddNormError` instead.
        copy_affine: start DyT's weight/bias from the norm's affine parameters.
        role_fn: ``(path, is_final) -> role``, used to pick alpha0 per role.
        alpha_overrides: alpha0 for module paths matching fnmatch patterns (first match wins),
            taking precedence over ``alpha_init``; e.g. a larger alpha0 for a norm whose input
            has a small scale.
        input_scale: ``{pattern: "batch" | "token"}`` (fnmatch, first match wins): the matching
            norms become :class:`~bio_speech_dyt.scaled_dyt.ScaledDyT` (the scale-tracking
            ablation, beyond the paper); a pattern that matches no swapped norm is an error.
    Returns:
        ``(model, report)``; the model is modified in place and keeps device and dtype.
    """
    kinds = tuple(kinds)
    bad = set(kinds) - set(KINDS)
    if bad:
        raise ValueError(f"unknown norm kind(s) {sorted(bad)}; choose from {KINDS}")
    if fused_add_norm not in ("unfuse", "error"):
        raise ValueError(f"fused_add_norm must be 'unfuse' or 'error', got {fused_add_norm!r}")
    report = ConversionReport()

    targets: list[tuple[str, nn.Module, str, str]] = []
    for path, module in model.named_modules():
        kind, flavour = classify_norm(module)
        if kind is None:
            continue
        if kind not in kinds or _excluded(path, exclude):
            report.kept.append(f"{path} ({type(module).__name__})")
            continue
        targets.append((path, module, kind, flavour))

    # the final norm: the last swapped norm outside any indexed layer stack, after every stacked one
    def stacked(p: str) -> bool:
        return any(part.isdigit() for part in p.split("."))

    last_stacked = max((i for i, t in enumerate(targets) if stacked(t[0])), default=-1)
    final_idx = max((i for i, t in enumerate(targets) if not stacked(t[0]) and i > last_stacked), default=None)

    scopes = dict(input_scale or {})
    for pat, scope in scopes.items():
        if scope not in SCOPES:
            raise ValueError(f"input_scale {pat!r}: scope {scope!r}, choose one of {SCOPES}")
        if not any(fnmatch.fnmatchcase(t[0], pat) for t in targets):
            raise ValueError(f"input_scale pattern {pat!r} matches none of the swapped norms: "
                             f"{', '.join(t[0] for t in targets) or 'none'}")
    scope_of = {path: first_match(path, scopes) for path, *_ in targets}
    mamba = [t[0] for t in targets if scope_of[t[0]] and t[3] == "mamba"]
    if mamba:
        raise ValueError(f"input_scale: ScaledDyT has no mamba_ssm-style (residual/prenorm) variant, for {mamba}")

    for i, (path, module, kind, flavour) in enumerate(targets):
        role = role_fn(path, i == final_idx)
        alpha0 = alpha_for(path, role, alpha_init, alpha_overrides)
        new = _make_dyt(module, kind, flavour, alpha0, copy_affine, scope_of[path])
        parent_path, _, attr = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        if not path:
            raise ValueError("convert_norms: the model itself is a norm; wrap it in a container")
        setattr(parent, attr, new)
        shape = tuple(new.normalized_shape)
        report.swapped.append(SwapRecord(path, type(module).__name__, shape, kind, role, alpha0, scope_of[path]))

    for path, module in model.named_modules():
        if getattr(module, "fused_add_norm", False) is True:
            if fused_add_norm == "error":
                raise FusedAddNormError(
                    f"{path or type(module).__name__} has fused_add_norm=True: its norm weights are applied by a "
                    f"fused kernel that bypasses the swapped DyT module. Pass fused_add_norm='unfuse' or build the "
                    f"model with fused_add_norm=False."
                )
            module.fused_add_norm = False
            report.unfused.append(path or type(module).__name__)
    return model, report
