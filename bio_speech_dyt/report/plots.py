"""Report figures: loss curves (LN vs DyT per task), DyT alpha trajectories, throughput bars.

Every function writes one PNG into ``out_dir`` and returns its path, or ``None`` when the
runs hold nothing to plot (the caller notes the skip).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bio_speech_dyt.report.metrics import THROUGHPUT_UNITS, loss_unit
from bio_speech_dyt.report.runs import Pair, Run
from bio_speech_dyt.report.style import BASELINE_COLOR, DYT_COLOR, LINESTYLES, grid, norm_color, save, slug

# panel title -> metrics.csv columns, first present wins (speech logs bits where it can)
CURVE_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Training loss", ("train_loss_bits", "train_loss")),
    ("Validation loss", ("valid_loss_bits", "valid_loss")),
    ("Validation accuracy", ("valid_accuracy", "valid_contrastive_accuracy")),
)


def _series(run: Run, key: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(x, y)`` of one metrics.csv column against step (else epoch), finite rows only; one
    series per seed when the file has a ``seed`` column."""
    cols = run.curves or {}
    if key not in cols:
        return []
    x = cols["step"] if "step" in cols and np.isfinite(cols["step"]).any() else cols["epoch"]
    y, seeds = cols[key], cols.get("seed")
    masks = [seeds == s for s in np.unique(seeds[np.isfinite(seeds)])] if seeds is not None else [True]
    return [(x[m], y[m]) for m in (np.isfinite(x) & np.isfinite(y) & mask for mask in masks) if m.any()]


def _x_label(runs: list[Run]) -> str:
    has_step = any(r.curves and "step" in r.curves and np.isfinite(r.curves["step"]).any() for r in runs)
    return "optimizer step" if has_step else "epoch"


def _ema(y: np.ndarray, beta: float = 0.9) -> np.ndarray:
    """Bias-corrected exponential moving average."""
    out, acc = np.empty_like(y), 0.0
    for i, v in enumerate(y):
        acc = beta * acc + (1 - beta) * v
        out[i] = acc / (1 - beta ** (i + 1))
    return out


def _plot_run(ax, run: Run, key: str, linestyle: str) -> tuple[bool, list[np.ndarray]]:
    """One run's curve(s) of ``key``; long training curves EMA-smoothed over the faint raw one
    (returns whether it smoothed, and the raw values plotted)."""
    series = _series(run, key)
    color = norm_color(run.is_dyt)
    label = f"{run.norm_label} · {run.name}" + (f" ({len(series)} seeds)" if len(series) > 1 else "")
    smooth = key.startswith("train_") and any(len(y) > 50 for _, y in series)
    for i, (x, y) in enumerate(series):
        if smooth:
            ax.plot(x, y, color=color, alpha=0.2, lw=0.8)
            y = _ema(y)
        ax.plot(x, y, color=color, ls=linestyle, lw=1.6, label=label if i == 0 else None,
                marker="o" if len(y) <= 20 else None, ms=3)
    return smooth, [y for _, y in series]


def _clip_top(series: list[np.ndarray]) -> float | None:
    """An upper y-limit that leaves out the first steps' loss and rare spikes when they reach beyond
    the bulk of the curves (an untrained model's first losses can be 50x the converged one and flatten
    every curve), else ``None``. The bulk: the values after each series' first 5 % of points (at least
    one); the limit: their upper quartile plus three interquartile ranges (Tukey's far-out fence)."""
    tails = [y[max(1, len(y) // 20):] for y in series if len(y) > 2]
    if not tails:
        return None
    q1, q3 = np.quantile(np.concatenate(tails), [0.25, 0.75])
    top = float(q3 + 3 * (q3 - q1))
    return top if max(float(np.max(y)) for y in series) > top else None


def loss_curves(pairs: list[Pair], out_dir: Path) -> Path | None:
    """Training / validation curves of one task and setting, LN-family and DyT on shared axes."""
    runs = [r for p in pairs for r in p.runs if r.curves is not None]
    panels = [(t, keys) for t, keys in CURVE_PANELS if any(_series(r, k) for r in runs for k in keys)]
    if not panels:
        return None
    fig, axes = grid(len(panels), max_cols=3)
    for ax, (title, keys) in zip(axes.flat, panels):
        units, smoothed, plotted = set(), False, []
        for r in runs:
            key = next((k for k in keys if _series(r, k)), None)
            if key is None:
                continue
            units.add("fraction" if "accuracy" in key else loss_unit(r, key))
            same_norm = [q for q in runs if q.is_dyt == r.is_dyt]
            smooth, values = _plot_run(ax, r, key, LINESTYLES[same_norm.index(r) % len(LINESTYLES)])
            smoothed |= smooth
            plotted += values
        top = None if "accuracy" in title.lower() else _clip_top(plotted)
        if top is not None:
            low = min(float(np.min(y)) for y in plotted)
            ax.set_ylim(low - 0.05 * (top - low), top)
        ax.set_title(title + (" (EMA-smoothed, raw faint)" if smoothed else "")
                     + (" (first steps and spikes above the axis)" if top is not None else ""))
        ax.set_xlabel(_x_label(runs))
        ax.set_ylabel(f"{title.split()[-1]} ({' / '.join(sorted(units))})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{pairs[0].label}: LN-family (blue) vs DyT (orange)")
    return save(fig, out_dir / f"curves-{slug(pairs[0].label)}.png")


def alpha_trajectories(run: Run, out_dir: Path) -> Path | None:
    """The alpha of every DyT layer over steps (alpha.csv), coloured input → output."""
    cols = run.alpha or {}
    layers = [k for k in cols if k != "step" and np.isfinite(cols[k]).any()]
    if not layers:
        return None
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    fig, axes = grid(1, panel=(8.0, 4.4))
    ax = axes[0, 0]
    cmap, norm = colormaps["plasma"], Normalize(0, max(1, len(layers) - 1))
    for i, name in enumerate(layers):
        mask = np.isfinite(cols["step"]) & np.isfinite(cols[name])
        ax.plot(cols["step"][mask], cols[name][mask], color=cmap(norm(i) * 0.9), lw=1.3,
                label=name if len(layers) <= 12 else None)
    if len(layers) <= 12:
        ax.legend(fontsize=7, ncol=1 + len(layers) // 7, title="DyT layer")
    else:
        bar = fig.colorbar(ScalarMappable(norm, cmap), ax=ax)
        bar.set_label(f"layer index (0 = {layers[0]}, {len(layers) - 1} = {layers[-1]})", fontsize=8)
    ax.set_title(f"{run.name}: DyT alpha per layer ({run.task})")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("alpha (dimensionless)")
    ax.grid(alpha=0.3)
    return save(fig, out_dir / f"alpha-{slug(run.name)}.png")


def throughput_bars(pairs: list[Pair], out_dir: Path) -> Path | None:
    """Training throughput (tokens/s, samples/s) LN-family vs DyT, annotated with DyT/LN."""
    keys = [k for k in THROUGHPUT_UNITS if any(r.number(k) is not None for p in pairs for r in p.runs)]
    if not keys:
        return None
    fig, axes = grid(len(keys), max_cols=2, panel=(5.0, 4.0))
    for ax, key in zip(axes.flat, keys):
        rows = [p for p in pairs if any(r.number(key) is not None for r in p.runs)]
        x = np.arange(len(rows))
        values = {side: [getattr(p, side).number(key) if getattr(p, side) else None for p in rows]
                  for side in ("baseline", "dyt")}
        for offset, side, color, label in ((-0.17, "baseline", BASELINE_COLOR, "LN / RMSNorm"),
                                           (0.17, "dyt", DYT_COLOR, "DyT")):
            bars = ax.bar(x + offset, [v or 0 for v in values[side]], width=0.32, color=color, label=label)
            ax.bar_label(bars, [f"{v:,.4g}" if v else "" for v in values[side]], label_type="center", fontsize=8,
                         color="white")
        for i, (base, dyt) in enumerate(zip(values["baseline"], values["dyt"])):
            if base and dyt:
                ax.annotate(f"DyT/LN ×{dyt / base:.2f}", (i, max(base, dyt)), ha="center", va="bottom", fontsize=9,
                            xytext=(0, 4), textcoords="offset points")
        tilt = len(rows) > 2
        ax.set_xticks(x, [p.label for p in rows], rotation=20 if tilt else 0, ha="right" if tilt else "center", fontsize=8)
        ax.set_xlim(-0.75, len(rows) - 0.25)
        ax.set_ylabel(f"training throughput ({THROUGHPUT_UNITS[key]})")
        ax.set_title(f"Throughput ({THROUGHPUT_UNITS[key]}), higher is better")
        ax.set_ylim(0, 1.25 * max(v or 0 for vs in values.values() for v in vs))
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    return save(fig, out_dir / "throughput.png")
