"""The paper's analysis of norm layers, for any model.

LayerNorm / RMSNorm layers: record input/output pairs on one batch (forward hooks), plot
output vs input (the paper's S-shaped, tanh-like curves; output taken before the affine
transform, as there) and overlay the least-squares ``scale * tanh(alpha x)``.
DyT layers: plot the learned ``weight * tanh(alpha x) + bias`` and the distribution of
``alpha x`` on the batch with the saturated share (``|alpha x| > 2``).
"""
from __future__ import annotations

import math

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from bio_speech_dyt.convert import classify_norm
from bio_speech_dyt.dyt import DyT
from bio_speech_dyt.report.fit import fit_tanh
from bio_speech_dyt.report.style import DYT_COLOR, grid, save, slug

SATURATION = 2.0  # |alpha x| beyond which tanh is within 4% of ±1
MAX_TOKENS = 4096  # tokens kept per layer (a seeded random subset)
SCATTER_TOKENS, SCATTER_CHANNELS = 48, 256
FIT_POINTS = 100_000


@dataclass
class LayerRecord:
    """What the hooks saw of one layer on the batch: ``x`` (tokens × channels input) and, for
    LN-family layers, ``y`` (the output before the affine transform)."""

    path: str
    kind: str  # layernorm | rmsnorm | dyt
    module: nn.Module
    xs: list[Tensor] = field(default_factory=list)
    ys: list[Tensor] = field(default_factory=list)
    saturated: int = 0
    total: int = 0
    sum_x: float = 0.0  # of every DyT input element (its std, beside the saturated share)
    sum_x2: float = 0.0

    def points(self, which: str) -> np.ndarray:
        parts = self.xs if which == "x" else self.ys
        return torch.cat(parts).numpy() if parts else np.empty((0, 0), np.float32)


def find_norms(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """``(path, module, kind)`` of every LayerNorm / RMSNorm (torch, fairseq2, mamba-style) and DyT."""
    found = []
    for path, m in model.named_modules():
        kind = "dyt" if isinstance(m, DyT) else classify_norm(m)[0]
        if kind in ("layernorm", "rmsnorm", "dyt"):
            found.append((path, m, kind))
    return found


def choose_evenly(items: list, k: int) -> list:
    """At most ``k`` items spread evenly over ``items`` (first and last included)."""
    if len(items) <= k:
        return list(items)
    return [items[i] for i in np.unique(np.linspace(0, len(items) - 1, k).round().astype(int))]


def _normalise(x: Tensor, kind: str, eps: float | None) -> Tensor:
    """The norm's output before its affine transform, computed from its input."""
    eps = torch.finfo(torch.float32).eps if eps is None else eps
    if kind == "layernorm":
        return (x - x.mean(-1, keepdim=True)) * torch.rsqrt(x.var(-1, unbiased=False, keepdim=True) + eps)
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def _hook(rec: LayerRecord, keep_samples: bool, generator: torch.Generator) -> Callable:
    def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        x = args[0] if args else kwargs.get("x", kwargs.get("input"))
        residual = kwargs.get("residual", args[1] if len(args) > 1 else None)
        if isinstance(residual, Tensor):  # mamba-style norms add the residual first
            x = x + residual
        x = x.detach().float()
        # what tanh sees: a ScaledDyT divides its input by an RMS first (the std stays the raw input's)
        scaled = module.scale_input(x) if hasattr(module, "scale_input") else x
        if rec.kind == "dyt" and not getattr(module, "channels_last", True):
            x, scaled = x.movedim(1, -1), scaled.movedim(1, -1)
        x = x.reshape(-1, x.shape[-1])
        if rec.kind == "dyt":
            ax = module.alpha.detach().float().reshape(-1)[0] * scaled.reshape(-1, x.shape[-1])
            rec.saturated += int((ax.abs() > SATURATION).sum())
            rec.total += ax.numel()
            rec.sum_x += float(x.double().sum())
            rec.sum_x2 += float(x.double().pow(2).sum())
        if not keep_samples:
            return
        if x.shape[0] > MAX_TOKENS:
            x = x[torch.randperm(x.shape[0], generator=generator)[:MAX_TOKENS].to(x.device)]
        x = x.cpu()
        rec.xs.append(x)
        if rec.kind != "dyt":
            rec.ys.append(_normalise(x, rec.kind, getattr(module, "eps", None)))

    return hook


def record_layers(model: nn.Module, run: Callable[[], Any], layers: list[tuple[str, nn.Module, str]],
                  sampled: set[str]) -> list[LayerRecord]:
    """Run ``run()`` once (no grad) with hooks on ``layers``; token samples are kept for the
    layers in ``sampled``, saturation counts for every DyT layer."""
    records = [LayerRecord(path, kind, m) for path, m, kind in layers]
    generator = torch.Generator().manual_seed(0)
    handles = [rec.module.register_forward_hook(_hook(rec, rec.path in sampled, generator), with_kwargs=True)
               for rec in records]
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return records


# -- LayerNorm / RMSNorm -----------------------------------------------------------------


def _fit_layer(rec: LayerRecord, rng: np.random.Generator) -> dict[str, Any]:
    x, y = rec.points("x").ravel(), rec.points("y").ravel()
    idx = rng.choice(x.size, FIT_POINTS, replace=False) if x.size > FIT_POINTS else slice(None)
    fit = fit_tanh(x[idx], y[idx])
    return {"path": rec.path, "kind": rec.kind, "alpha": fit.alpha, "scale": fit.scale, "r2": fit.r2,
            "regime": fit.regime, "points": int(x.size), "input_std": float(x.std())}


def plot_norm_io(records: list[LayerRecord], fits: list[dict], title: str, path: Path) -> Path:
    """Output (before affine) vs input of each LN-family layer, coloured by token, with its tanh fit."""
    from matplotlib import colormaps

    fig, axes = grid(len(records), panel=(4.2, 3.6))
    rng = np.random.default_rng(0)
    cmap = colormaps["Blues"]
    for ax, rec, fit in zip(axes.flat, records, fits):
        x, y = rec.points("x"), rec.points("y")
        tok = rng.choice(x.shape[0], min(SCATTER_TOKENS, x.shape[0]), replace=False)
        ch = rng.choice(x.shape[1], min(SCATTER_CHANNELS, x.shape[1]), replace=False)
        xs, ys = x[np.ix_(tok, ch)], y[np.ix_(tok, ch)]
        colour = np.repeat(np.linspace(0.35, 1.0, len(tok)), len(ch))
        ax.scatter(xs.ravel(), ys.ravel(), c=cmap(colour), s=4, alpha=0.5, linewidths=0, rasterized=True)
        lim = float(np.abs(xs).max())  # the plotted points' range (the curve beyond it is extrapolation)
        grid_x = np.linspace(-lim, lim, 400)
        ax.plot(grid_x, fit["scale"] * np.tanh(fit["alpha"] * grid_x), color=DYT_COLOR, lw=2,
                label=f"fit {fit['scale']:.2f}·tanh({fit['alpha']:.3g}·x)\nR² = {fit['r2']:.3f}")
        ax.set_title(_short_path(rec.path) + f" ({rec.kind})", fontsize=9)
        ax.set_xlabel("norm input x (a.u.)")
        ax.set_ylabel("output before affine (a.u.)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"{title}: norm output vs input ({SCATTER_TOKENS} tokens, colour = token)")
    return save(fig, path)


# -- DyT ---------------------------------------------------------------------------------


def _dyt_row(rec: LayerRecord) -> dict[str, Any]:
    m = rec.module
    w = m.weight.detach().float() if m.weight is not None else torch.ones(1)
    return {"path": rec.path, "alpha": float(m.alpha.detach().float().reshape(-1)[0]),
            "weight_min": float(w.min()), "weight_max": float(w.max()),
            "saturated_share": rec.saturated / rec.total if rec.total else None, "points": rec.total,
            "input_std": math.sqrt(max(0.0, rec.sum_x2 / rec.total - (rec.sum_x / rec.total) ** 2)) if rec.total else None}


def _channel_band(m: nn.Module, t: np.ndarray) -> np.ndarray | None:
    """``weight_c * t + bias_c`` for every channel c (columns), or ``None`` when all channels agree."""
    if m.weight is None:
        return None
    w = m.weight.detach().float().cpu().numpy()
    b = m.bias.detach().float().cpu().numpy() if m.bias is not None else np.zeros_like(w)
    band = np.outer(t, w) + b
    return band if np.ptp(band, axis=1).max() > 1e-6 else None


def _dyt_curve(ax, rec: LayerRecord, row: dict) -> None:
    alpha, x = row["alpha"], rec.points("x")
    lim = max(float(np.quantile(np.abs(x), 0.99)), 3 / max(abs(alpha), 1e-6))  # 99% of inputs and the whole S
    gx = np.linspace(-lim, lim, 400)
    t = np.tanh(alpha * gx)
    band = _channel_band(rec.module, t)
    if band is not None:
        ax.fill_between(gx, band.min(1), band.max(1), color=DYT_COLOR, alpha=0.2, label="weight·tanh(αx)+bias, all channels")
    ax.plot(gx, t, color=DYT_COLOR, lw=2, label=f"tanh(αx), α = {alpha:.3g}")
    for sign in (-1, 1):
        ax.axvline(sign * SATURATION / alpha, color="grey", ls=":", lw=1)
    ax.set_title(f"{_short_path(rec.path)}\nα = {alpha:.3g}, weight ∈ [{row['weight_min']:.2f}, {row['weight_max']:.2f}]",
                 fontsize=9)
    ax.set_xlabel("DyT input x (a.u.)")
    ax.set_ylabel("DyT output (a.u.)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")


def _dyt_hist(ax, rec: LayerRecord, row: dict) -> None:
    ax.hist(row["alpha"] * rec.points("x").ravel(), bins=80, color=DYT_COLOR, alpha=0.8, log=True)
    for sign in (-1, 1):
        ax.axvline(sign * SATURATION, color="black", ls="--", lw=1)
    share = row["saturated_share"] or 0.0
    ax.text(0.98, 0.95, f"|αx| > {SATURATION:g}: {100 * share:.2f}%", transform=ax.transAxes, ha="right", va="top",
            fontsize=9, bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
    ax.set_xlabel("α·x on the batch")
    ax.set_ylabel("count (log)")


def plot_dyt(records: list[LayerRecord], rows: list[dict], title: str, path: Path) -> Path:
    """Per DyT layer: the learned curve (with the channel band of weight·tanh(αx)+bias) above
    the histogram of α·x on the batch."""
    fig, axes = grid(len(records), panel=(4.2, 3.0), rows_per_panel=2)
    cols = axes.shape[1]
    for i, (rec, row) in enumerate(zip(records, rows)):
        _dyt_curve(axes[(i // cols) * 2, i % cols], rec, row)
        _dyt_hist(axes[(i // cols) * 2 + 1, i % cols], rec, row)
    fig.suptitle(f"{title}: learned DyT curves and α·x distribution (dotted/dashed: |αx| = {SATURATION:g})")
    return save(fig, path)


def _short_path(path: str, parts: int = 3) -> str:
    bits = path.split(".")
    return ".".join(bits[-parts:]) if len(bits) > parts else path or "(model)"


# -- entry points ------------------------------------------------------------------------


def run_dir_of(ckpt_path: Path) -> Path:
    """The run directory of ``RUN/checkpoints/X.ckpt`` (else the checkpoint's folder)."""
    return ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else ckpt_path.parent


def analyze_model(model: nn.Module, run: Callable[[], Any], out_dir: str | Path, title: str,
                  max_layers: int = 8) -> dict[str, Any]:
    """Analyse the norm layers of ``model`` on the batch ``run()`` feeds it.

    Up to ``max_layers`` LN-family layers (evenly chosen) get the input/output scatter and a
    tanh fit; every DyT layer gets its alpha, weight range and saturated share, up to
    ``max_layers`` of them a plot. Returns the numbers and the PNG file names (in ``out_dir``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    norms = find_norms(model)
    ln = choose_evenly([n for n in norms if n[2] != "dyt"], max_layers)
    dyt = [n for n in norms if n[2] == "dyt"]
    sampled = {n[0] for n in ln} | {n[0] for n in choose_evenly(dyt, max_layers)}
    was_training = model.training
    model.eval()
    try:
        records = record_layers(model, run, ln + dyt, sampled)
    finally:
        model.train(was_training)
    result: dict[str, Any] = {"title": title, "norm_layers": [], "dyt_layers": [], "plots": [], "notes": []}
    silent = [r.path for r in records if not r.xs and not r.total]
    if silent:
        result["notes"].append(f"not called in the forward pass (fused path?), skipped: {', '.join(silent)}")
    if not norms:
        result["notes"].append("no LayerNorm, RMSNorm or DyT layer found in the model")
    stem = slug(title)
    ln_recs = [r for r in records if r.kind != "dyt" and r.xs]
    if ln_recs:
        rng = np.random.default_rng(0)
        result["norm_layers"] = [_fit_layer(r, rng) for r in ln_recs]
        plot = plot_norm_io(ln_recs, result["norm_layers"], title, out_dir / f"{stem}-norm-io.png")
        result["plots"].append(plot.name)
    dyt_recs = [r for r in records if r.kind == "dyt" and r.total]
    if dyt_recs:
        result["dyt_layers"] = [_dyt_row(r) for r in dyt_recs]
        shown = [(r, row) for r, row in zip(dyt_recs, result["dyt_layers"]) if r.xs]
        plot = plot_dyt([r for r, _ in shown], [row for _, row in shown], title, out_dir / f"{stem}-dyt.png")
        result["plots"].append(plot.name)
    return result


def analyze_checkpoint(ckpt_path: str | Path, out_dir: str | Path, max_layers: int = 8,
                       name: str | None = None) -> dict[str, Any]:
    """:func:`analyze_model` on a pretraining checkpoint, rebuilt by
    :func:`bio_speech_dyt.jobs.load_checkpoint_model` and fed one real batch. ``name`` names the run in
    the title and the plots' file names (default: the run directory's name)."""
    from bio_speech_dyt.jobs import load_checkpoint_model

    ckpt_path = Path(ckpt_path)
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"{ckpt_path}: no such checkpoint")
    cfg, model, run = load_checkpoint_model(ckpt_path)
    task, norm = getattr(cfg, "task", "?"), getattr(getattr(cfg, "model", None), "norm", "?")
    run_name = name or run_dir_of(ckpt_path).name
    result = analyze_model(model, run, out_dir, f"{run_name} {ckpt_path.stem} ({task}, {norm})", max_layers)
    result.update({"checkpoint": str(ckpt_path), "task": task, "norm": norm})
    return result
