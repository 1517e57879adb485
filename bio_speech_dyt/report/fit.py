"""Least-squares tanh fits: ``y ≈ scale * tanh(alpha * x)`` (the paper's view of a norm layer,
:func:`fit_tanh`) and a whole DyT ``y_c ≈ weight_c * tanh(alpha * x_c) + bias_c`` over channels
(:func:`fit_dyt`, the initialisation of a DyT that replaces a pretrained norm).

For a fixed alpha the best scale (or per-channel weight and bias) is closed-form linear least
squares, so both fits are a 1-D search over log(alpha): a log grid, then golden-section refinement.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

GOLDEN = (math.sqrt(5) - 1) / 2


@dataclass(frozen=True)
class TanhFit:
    alpha: float
    scale: float
    r2: float  # coefficient of determination of the fit
    regime: str  # "tanh"; "linear" / "step" when alpha hit the low / high end of the search range


@dataclass(frozen=True)
class DyTFit:
    alpha: float
    weight: np.ndarray  # (C,)
    bias: np.ndarray | None  # (C,), None for a fit without bias (a DyT replacing RMSNorm)
    r2: float  # 1 - SSE / sum of squares of y about its per-channel mean
    rel_error: float  # sqrt(SSE / sum(y^2)): relative RMS error of the fitted map
    regime: str  # as TanhFit.regime


def _search_log_alpha(sse: Callable[[float], float], centre: float, grid_points: int, decades: float,
                      iters: int) -> tuple[float, str]:
    """Minimise ``sse(log alpha)`` over ``decades`` decades either side of ``centre`` (a log grid,
    then golden-section refinement around its best point); returns ``(log_alpha, regime)``."""
    span = decades * math.log(10)
    grid = np.linspace(centre - span, centre + span, grid_points)
    best = int(np.argmin([sse(g) for g in grid]))
    lo, hi = grid[max(0, best - 1)], grid[min(grid_points - 1, best + 1)]
    a, b = hi - GOLDEN * (hi - lo), lo + GOLDEN * (hi - lo)
    fa, fb = sse(a), sse(b)
    for _ in range(iters):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - GOLDEN * (hi - lo)
            fa = sse(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + GOLDEN * (hi - lo)
            fb = sse(b)
    return (lo + hi) / 2, {0: "linear", grid_points - 1: "step"}.get(best, "tanh")


def _profile_sse(log_alpha: float, x: np.ndarray, y: np.ndarray, yy: float) -> tuple[float, float]:
    """Residual sum of squares at the best scale for ``alpha = exp(log_alpha)``, and that scale."""
    t = np.tanh(math.exp(log_alpha) * x)
    tt = float(t @ t)
    if tt == 0.0:
        return yy, 0.0
    ty = float(t @ y)
    return yy - ty * ty / tt, ty / tt


def fit_tanh(x: np.ndarray, y: np.ndarray, grid_points: int = 121, decades: float = 3.0, iters: int = 60) -> TanhFit:
    """Fit ``scale * tanh(alpha * x)`` to the points by least squares.

    alpha is searched over ``decades`` decades either side of ``1 / std(x)``.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape or x.size < 3:
        raise ValueError(f"fit_tanh needs matching x and y with ≥ 3 points, got {x.shape} and {y.shape}")
    yy = float(y @ y)
    centre = -math.log(float(np.std(x)) or 1.0)
    log_alpha, regime = _search_log_alpha(lambda g: _profile_sse(g, x, y, yy)[0], centre, grid_points, decades, iters)
    err, scale = _profile_sse(log_alpha, x, y, yy)
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - err / total if total > 0 else float("nan")
    return TanhFit(math.exp(log_alpha), scale, r2, regime)


def _channel_fit(log_alpha: float, x: np.ndarray, y: np.ndarray, bias: bool) -> tuple[float, np.ndarray, np.ndarray | None]:
    """``(SSE, weight, bias)`` of the per-channel least squares of ``y`` on ``tanh(alpha x)``."""
    t = np.tanh(math.exp(log_alpha) * x)
    if bias:
        t_mean, y_mean = t.mean(axis=0), y.mean(axis=0)
        t, y = t - t_mean, y - y_mean
    tt, ty, yy = (t * t).sum(axis=0), (t * y).sum(axis=0), (y * y).sum(axis=0)
    safe = tt > 0
    weight = np.where(safe, ty / np.where(safe, tt, 1.0), 0.0)
    sse = float((yy - weight * ty).sum())
    return sse, weight, (y_mean - weight * t_mean) if bias else None


def fit_dyt(x: np.ndarray, y: np.ndarray, bias: bool = True, grid_points: int = 61, decades: float = 3.0,
            iters: int = 40) -> DyTFit:
    """Fit one DyT to ``N`` measured input/output rows ``x, y`` of shape ``(N, C)``: a shared alpha,
    per-channel weight (and bias) by least squares. alpha is searched over ``decades`` decades
    either side of ``1 / std(x)``."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 2 or x.shape[0] < 3:
        raise ValueError(f"fit_dyt needs matching (N, C) inputs and outputs with N ≥ 3, got {x.shape} and {y.shape}")
    centre = -math.log(float(np.std(x)) or 1.0)
    log_alpha, regime = _search_log_alpha(lambda g: _channel_fit(g, x, y, bias)[0], centre, grid_points, decades, iters)
    sse, weight, b = _channel_fit(log_alpha, x, y, bias)
    about_mean = float(((y - y.mean(axis=0)) ** 2).sum())
    r2 = 1.0 - sse / about_mean if about_mean > 0 else float("nan")
    rel = math.sqrt(max(sse, 0.0) / float((y * y).sum())) if (y * y).sum() > 0 else float("nan")
    return DyTFit(math.exp(log_alpha), weight, b, r2, rel, regime)
