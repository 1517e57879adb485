"""Shared plot style: LN-family runs blue, DyT orange, in every figure.

Figures are built with matplotlib's object API (``Figure``, no pyplot), so the report never
touches the global backend and needs no display.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from bio_speech_dyt.io import atomic_path

BASELINE_COLOR = "#1f77b4"  # LayerNorm / RMSNorm
DYT_COLOR = "#ff7f0e"
LINESTYLES = ("-", "--", ":", "-.")


def norm_color(is_dyt: bool) -> str:
    return DYT_COLOR if is_dyt else BASELINE_COLOR


def grid(n_panels: int, max_cols: int = 4, panel: tuple[float, float] = (4.6, 3.4),
         rows_per_panel: int = 1) -> tuple[Figure, np.ndarray]:
    """A figure with ``n_panels`` panels in row-major order (``rows_per_panel`` axes stacked in each),
    returned as an axes array of shape ``(rows * rows_per_panel, cols)``; unused axes hidden."""
    cols = max(1, min(max_cols, n_panels))
    rows = -(-max(1, n_panels) // cols)
    fig = Figure(figsize=(panel[0] * cols, panel[1] * rows * rows_per_panel), layout="constrained")
    axes = np.asarray(fig.subplots(rows * rows_per_panel, cols, squeeze=False))
    for i in range(n_panels, rows * cols):
        for k in range(rows_per_panel):
            axes[(i // cols) * rows_per_panel + k, i % cols].set_visible(False)
    return fig, axes


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as PNG atomically and return ``path``."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path


def slug(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "plot"
