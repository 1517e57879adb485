"""AdamW parameter groups and learning-rate schedules shared by both domains."""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import nn

from bio_speech_dyt.config import OptimConfig
from bio_speech_dyt.dyt import DyT

# Norm classes whose parameters never get weight decay (matched by name for duck-typed ones).
_NORM_TYPES = (nn.LayerNorm, nn.RMSNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d, DyT)
_NORM_NAME_HINTS = ("LayerNorm", "RMSNorm", "GroupNorm", "DyT", "BatchNorm")


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, _NORM_TYPES) or any(h in type(module).__name__ for h in _NORM_NAME_HINTS)


NO_DECAY_KINDS = ("norms", "biases", "embeddings")


def no_decay_names(model: nn.Module, extra: Iterable[str] = (), kinds: Iterable[str] = ("norms", "biases")) -> set[str]:
    """Names of parameters without weight decay: those of the ``kinds`` (norms: every norm
    parameter and DyT's alpha; biases; embeddings), every scalar (0-dim) parameter, the ``extra``
    names and whatever any submodule's ``no_weight_decay()`` returns (names relative to that
    submodule, e.g. a Hyena filter's MLP)."""
    kinds = set(kinds)
    if kinds - set(NO_DECAY_KINDS):
        raise ValueError(f"optim.no_decay: unknown kind(s) {sorted(kinds - set(NO_DECAY_KINDS))}; "
                         f"choose from {NO_DECAY_KINDS}")
    names: set[str] = set(extra)
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        hook = getattr(module, "no_weight_decay", None)
        if callable(hook):
            names |= {prefix + n for n in hook()}
        for p_name, p in module.named_parameters(recurse=False):
            is_kind = {"norms": _is_norm(module) or p_name == "alpha",
                       "biases": p_name == "bias" or p_name.endswith("_bias"),
                       "embeddings": isinstance(module, nn.Embedding)}
            if p.ndim == 0 or any(is_kind[k] for k in kinds):
                names.add(prefix + p_name)
    return names


def param_groups(model: nn.Module, weight_decay: float, extra_no_decay: Iterable[str] = (),
                 no_decay: Iterable[str] = ("norms", "biases"), alpha_lr: float | None = None) -> list[dict]:
    """``decay`` / ``no_decay`` groups; with ``alpha_lr`` every DyT's alpha goes to a third group,
    ``dyt_alpha``, at that lr without decay."""
    skip = no_decay_names(model, extra_no_decay, no_decay)
    alphas = {id(m.alpha) for m in model.modules() if isinstance(m, DyT)} if alpha_lr is not None else set()
    decay, no_decay, alpha = [], [], []
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (alpha if id(p) in alphas else no_decay if name in skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, "name": "decay"}]
    groups.append({"params": no_decay, "weight_decay": 0.0, "name": "no_decay"})
    groups.append({"params": alpha, "weight_decay": 0.0, "lr": alpha_lr, "name": "dyt_alpha"})
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: OptimConfig, extra_no_decay: Iterable[str] = ()) -> torch.optim.AdamW:
    alpha_lr = cfg.lr * cfg.alpha_lr_scale if cfg.alpha_lr_scale != 1.0 else None
    return torch.optim.AdamW(param_groups(model, cfg.weight_decay, extra_no_decay, cfg.no_decay, alpha_lr),
                             lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)


def lr_lambda(cfg: OptimConfig, total_steps: int) -> Callable[[int], float]:
    """Multiplier of ``cfg.lr`` at optimizer step ``step`` (0-based).

    Warm-up over ``warmup_steps`` (or ``warmup_ratio`` of the horizon; timm takes a fractional
    ``warmup_t`` as it is): ``(step + 1) / warmup`` (fairseq's), or with ``warmup_init_lr``
    linear from it at step 0 to ``lr`` at step ``warmup`` (timm's ``warmup_lr_init``). Then cosine
    to ``min_lr_ratio``, polynomial decay to ``min_lr_ratio`` (fairseq's ``polynomial_decay``) or
    constant. The decay ends at ``schedule_steps`` (default ``total_steps``) and runs from the end
    of the warm-up (``warmup_prefix``) or from step 0, as timm's ``CosineLRScheduler``.
    """
    horizon = cfg.schedule_steps or total_steps
    if cfg.warmup_ratio is not None and cfg.warmup_steps:
        raise ValueError("optim: set warmup_steps or warmup_ratio, not both")
    warmup = cfg.warmup_ratio * horizon if cfg.warmup_ratio is not None else max(0, cfg.warmup_steps)
    end = max(horizon, warmup + 1)
    start = warmup if cfg.warmup_prefix else 0
    floor = cfg.min_lr_ratio
    init = None if cfg.warmup_init_lr is None else cfg.warmup_init_lr / cfg.lr
    if cfg.scheduler not in ("cosine", "polynomial", "constant"):
        raise ValueError(f"unknown scheduler {cfg.scheduler!r}; choose cosine | polynomial | constant")

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup if init is None else init + (1.0 - init) * step / warmup
        if cfg.scheduler == "constant":
            return 1.0
        progress = min(1.0, (step - start) / max(1, end - start))
        if cfg.scheduler == "cosine":
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return floor + (1.0 - floor) * (1.0 - progress) ** cfg.power

    return f


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, total_steps))
