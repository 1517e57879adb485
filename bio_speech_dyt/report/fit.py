"""Least-squares fit of ``y ≈ scale * tanh(alpha * x)`` (the paper's view of a norm layer).

For a fixed alpha the best scale is closed-form (``<y, t> / <t, t>`` with ``t = tanh(alpha x)``),
so the fit is a 1-D search over log(alpha): a log grid, then golden-section refinement.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GOLDEN = (math.sqrt(5) - 1) / 2


@dataclass(frozen=True)
class TanhFit:
    alpha: float
    scale: float
    r2: float  # coefficient of determination of the fit
    regime: str  # "tanh"; "linear" / "step" when alpha hit the low / high end of the search range


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
    span = decades * math.log(10)
    grid = np.linspace(centre - span, centre + span, grid_points)
    sse = np.array([_profile_sse(g, x, y, yy)[0] for g in grid])
    best = int(np.argmin(sse))
    lo, hi = grid[max(0, best - 1)], grid[min(grid_points - 1, best + 1)]
    a, b = hi - GOLDEN * (hi - lo), lo + GOLDEN * (hi - lo)
    fa, fb = _profile_sse(a, x, y, yy)[0], _profile_sse(b, x, y, yy)[0]
    for _ in range(iters):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - GOLDEN * (hi - lo)
            fa = _profile_sse(a, x, y, yy)[0]
        else:
            lo, a, fa = a, b, fb
            b = lo + GOLDEN * (hi - lo)
            fb = _profile_sse(b, x, y, yy)[0]
    log_alpha = (lo + hi) / 2
    err, scale = _profile_sse(log_alpha, x, y, yy)
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - err / total if total > 0 else float("nan")
    regime = {0: "linear", grid_points - 1: "step"}.get(best, "tanh")
    return TanhFit(math.exp(log_alpha), scale, r2, regime)
