"""``bsd study STUDY.yaml [--jobs N] [--out DIR]``: a grid of runs from one YAML, resumable and parallel.

A study crosses norms (one base config each) × variants (named lists of ``--set`` overrides, optionally
crossed with ``grid`` axes) × seeds, and runs every cell through the ordinary front door,
``python -m bio_speech_dyt pretrain | evaluate ...`` with ``--set`` and ``--out``: this module knows
no domain. An optional ``evaluate`` stage fine-tunes (GenomicBenchmarks) or scores (speech) the
pretraining checkpoints of chosen variants, GB also from scratch. Then ``bsd report`` gets every run
directory, and the study writes its own summary: ``study.md`` / ``study.json`` (mean ± std over seeds
per stage, variant and norm, with steps and wall time) and ``study_<stage>_curves.png`` (the stage's
metric against the step, mean over seeds, where its runs log it) and ``study_<stage>_seeds.png`` (every
cell's final value, mean ± std).

Cells live in ``OUT/<stage>/<variant>/<norm>/seed<S>``. A cell whose directory holds ``metrics.json``
is done and skipped; a pretraining cell that stopped part-way continues from its last checkpoint
(``--resume``); an evaluation cell starts over. ``.study.log`` in each cell keeps its output and
``.study_cell.json`` its command, attempts and accumulated wall time. Paths in the YAML are relative to
the working directory, as for ``bsd pretrain``. ``--only VARIANTS`` and ``--seeds S`` restrict which
cells run (screen with one seed, confirm with all later); the summary covers every finished cell.
Example studies: ``configs/studies/``.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import yaml

from bio_speech_dyt.config import ConfigError, load_config, to_dict
from bio_speech_dyt.io import write_json, write_text

__all__ = ["StudyConfig", "Cell", "plan", "run_study", "summarise", "main"]

STAGE_KINDS = ("pretrain", "genomic-benchmarks")
EVAL_KINDS = ("genomic-benchmarks", "speech")
ANALYZE = ("last", "all", "none")


@dataclasses.dataclass
class Cells:
    """A variant (or one value of a grid axis): overrides, and optionally which norms, seeds and data."""

    set: list[str] = dataclasses.field(default_factory=list)
    norms: list[str] | None = None  # None: every norm of the stage
    seeds: list[int] | None = None  # None: the study's seeds
    data: list[str] | None = None  # GenomicBenchmarks task folders (None: the stage's)


Variant = list[str] | Cells


@dataclasses.dataclass
class StageSpec:
    kind: str = "pretrain"  # pretrain | genomic-benchmarks
    configs: dict[str, str] = dataclasses.field(default_factory=dict)  # norm -> base config
    set: list[str] = dataclasses.field(default_factory=list)  # overrides of every cell
    data: list[str] | None = None  # genomic-benchmarks: task folders
    checkpoints: dict[str, str] = dataclasses.field(default_factory=dict)  # genomic-benchmarks: norm -> checkpoint
    metric: str = "valid_loss"  # metrics.json key the summary compares
    goal: str = "min"  # min | max
    references: list[str] = dataclasses.field(default_factory=list)  # metrics.json keys shown beside it


@dataclasses.dataclass
class EvalSpec(StageSpec):
    kind: str = "genomic-benchmarks"  # genomic-benchmarks | speech
    variants: list[str] | None = None  # pretraining variants whose checkpoints are evaluated (None: all)
    checkpoint_seed: int | None = None  # genomic-benchmarks: that pretraining seed's checkpoint (None: the first)
    seeds: list[int] = dataclasses.field(default_factory=lambda: [1])  # genomic-benchmarks: split seeds
    scratch: bool = False  # genomic-benchmarks: also from scratch, as the variant "scratch"
    manifest: str | None = None  # speech: the manifest scored
    metric: str = "test_accuracy"
    goal: str = "max"


@dataclasses.dataclass
class StudyConfig:
    name: str = "study"
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0])
    stage: StageSpec = dataclasses.field(default_factory=StageSpec)
    variants: dict[str, Variant] = dataclasses.field(default_factory=lambda: {"plain": []})
    grid: dict[str, dict[str, Variant]] = dataclasses.field(default_factory=dict)  # axis -> value -> cells
    evaluate: EvalSpec | None = None
    best_within: list[str] = dataclasses.field(default_factory=list)  # grid axes held fixed when picking the best
    threads: int = 1  # OMP_NUM_THREADS of every cell
    report: bool = True  # hand the run directories to bsd report
    # ... with --analyze on each (variant, norm)'s first seed: a pretraining's last checkpoint, all its
    # periodic ones (the norm inputs' scale and DyT's saturated share over training), or none; a
    # GenomicBenchmarks cell's best checkpoint (of its first task and seed) unless none
    analyze: str = "last"  # last | all | none


@dataclasses.dataclass
class Cell:
    stage: str  # pretrain | genomic-benchmarks | evaluate
    variant: str
    norm: str
    seed: int
    run_dir: Path
    args: list[str]  # after ``python -m bio_speech_dyt``
    checkpoint: Path | None = None  # what an evaluation cell consumes
    axes: dict[str, str] = dataclasses.field(default_factory=dict)  # grid axis -> label

    @property
    def done(self) -> bool:
        return (self.run_dir / "metrics.json").is_file()


def _cells(spec: Variant) -> Cells:
    return spec if isinstance(spec, Cells) else Cells(set=list(spec))


def _merge(parts: Sequence[Cells]) -> Cells:
    """Overrides concatenated in order; norms intersected; seeds and data: the last given."""
    out = Cells()
    for p in parts:
        out.set = out.set + p.set
        out.norms = p.norms if out.norms is None else [n for n in out.norms if p.norms is None or n in p.norms]
        out.seeds = p.seeds if p.seeds is not None else out.seeds
        out.data = p.data if p.data is not None else out.data
    return out


def variants(study: StudyConfig) -> dict[str, tuple[Cells, dict[str, str]]]:
    """Grid axes × variants, named by their labels joined with ``+``; with each, its grid labels."""
    axes = [list(values.items()) for values in study.grid.values()] + [list(study.variants.items())]
    out = {}
    for combo in itertools.product(*axes):
        labels = dict(zip(study.grid, (label for label, _ in combo)))
        out["+".join(label for label, _ in combo)] = (_merge([_cells(spec) for _, spec in combo]), labels)
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text)


def _sets(overrides: Sequence[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def _gb_args(config: str, data: list[str] | None, seed: int, overrides: list[str], out: Path,
             checkpoint: str | Path | None, where: str) -> list[str]:
    if not data:
        raise ConfigError(f"{where}: genomic-benchmarks cells need task folders (data)")
    args = ["evaluate", "genomic-benchmarks", config, "--data", *data, "--seeds", str(seed), *_sets(overrides)]
    return args + (["--checkpoint", str(checkpoint)] if checkpoint else []) + ["--out", str(out)]


def _check_stage(stage: StageSpec, kinds: tuple[str, ...], where: str) -> None:
    if stage.kind not in kinds:
        raise ConfigError(f"{where}.kind must be one of {kinds}, got {stage.kind!r}")
    if stage.goal not in ("min", "max"):
        raise ConfigError(f"{where}.goal must be min or max, got {stage.goal!r}")
    if not stage.configs and stage.kind != "speech":
        raise ConfigError(f"{where}.configs: give a base config per norm, e.g. {{layernorm: A.yaml, dyt: B.yaml}}")


def plan(study: StudyConfig, out: Path) -> tuple[list[Cell], list[Cell]]:
    """The main stage's cells and the evaluation stage's (empty without ``evaluate``)."""
    stage = study.stage
    _check_stage(stage, STAGE_KINDS, "stage")
    if study.analyze not in ANALYZE:
        raise ConfigError(f"analyze must be one of {ANALYZE}, got {study.analyze!r}")
    unknown_axes = [a for a in study.best_within if a not in study.grid]
    if unknown_axes:
        raise ConfigError(f"best_within: {unknown_axes} are not grid axes ({sorted(study.grid)})")
    main: list[Cell] = []
    for name, (spec, labels) in variants(study).items():
        norms = spec.norms if spec.norms is not None else list(stage.configs)
        unknown = [n for n in norms if n not in stage.configs]
        if unknown:
            raise ConfigError(f"variants.{name}.norms: {unknown} have no config in stage.configs ({sorted(stage.configs)})")
        for norm, seed in itertools.product(norms, spec.seeds or study.seeds):
            run_dir = out / stage.kind / _slug(name) / norm / f"seed{seed}"
            overrides = stage.set + spec.set
            if stage.kind == "pretrain":
                args = ["pretrain", stage.configs[norm], *_sets([*overrides, f"seed={seed}"]), "--out", str(run_dir),
                        "--resume"]
            else:
                args = _gb_args(stage.configs[norm], spec.data or stage.data, seed, overrides, run_dir,
                                stage.checkpoints.get(norm), f"variants.{name}")
            main.append(Cell(stage.kind, name, norm, seed, run_dir, args, axes=labels))
    return main, _plan_evaluation(study, main, out)


def _plan_evaluation(study: StudyConfig, main: list[Cell], out: Path) -> list[Cell]:
    ev = study.evaluate
    if ev is None:
        return []
    _check_stage(ev, EVAL_KINDS, "evaluate")
    if study.stage.kind != "pretrain":
        raise ConfigError("evaluate: consumes pretraining checkpoints, so stage.kind must be pretrain")
    wanted = ev.variants if ev.variants is not None else sorted({c.variant for c in main})
    missing = [v for v in wanted if v not in {c.variant for c in main}]
    if missing:
        raise ConfigError(f"evaluate.variants: {missing} are not variants of the study")
    cells: list[Cell] = []
    for c in main:
        if c.variant not in wanted:
            continue
        ckpt = c.run_dir / "checkpoints" / "last.ckpt"
        base = out / "evaluate" / _slug(c.variant) / c.norm
        if ev.kind == "speech":
            if not ev.manifest:
                raise ConfigError("evaluate.manifest: speech evaluation needs the manifest to score")
            args = ["evaluate", "speech", "--checkpoint", str(ckpt), "--manifest", ev.manifest,
                    "--out", str(base / f"seed{c.seed}")]
            cells.append(Cell("evaluate", c.variant, c.norm, c.seed, base / f"seed{c.seed}", args, ckpt))
            continue
        first = ev.checkpoint_seed if ev.checkpoint_seed is not None else min(x.seed for x in main if x.variant == c.variant)
        if c.seed != first or c.norm not in ev.configs:
            continue
        for s in ev.seeds:
            run_dir = base / f"pt{c.seed}" / f"seed{s}"
            args = _gb_args(ev.configs[c.norm], ev.data, s, ev.set, run_dir, ckpt, "evaluate")
            cells.append(Cell("evaluate", c.variant, c.norm, s, run_dir, args, ckpt))
    if ev.scratch and ev.kind == "genomic-benchmarks":
        for norm, s in itertools.product(ev.configs, ev.seeds):
            run_dir = out / "evaluate" / "scratch" / norm / f"seed{s}"
            cells.append(Cell("evaluate", "scratch", norm, s, run_dir,
                              _gb_args(ev.configs[norm], ev.data, s, ev.set, run_dir, None, "evaluate")))
    return cells


# -- running -----------------------------------------------------------------------------


def _command(args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "bio_speech_dyt", *args]


def _env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def _run_cell(cell: Cell, threads: int) -> int:
    cell.run_dir.mkdir(parents=True, exist_ok=True)
    record_path = cell.run_dir / ".study_cell.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {"wall_s": 0.0, "attempts": 0}
    start = time.perf_counter()
    with open(cell.run_dir / ".study.log", "a") as log:
        log.write(f"$ {shlex.join(_command(cell.args))}\n")
        log.flush()
        rc = subprocess.run(_command(cell.args), stdout=log, stderr=subprocess.STDOUT, env=_env(threads)).returncode
    record.update(command=shlex.join(_command(cell.args)), returncode=rc, attempts=record["attempts"] + 1,
                  wall_s=record["wall_s"] + time.perf_counter() - start)
    write_json(record_path, record)
    return rc


def run_cells(cells: list[Cell], jobs: int, threads: int) -> list[Cell]:
    """Run the cells not done yet, ``jobs`` at a time; return the failed ones."""
    todo = [c for c in cells if not c.done]
    if len(todo) < len(cells):
        print(f"study: {len(cells) - len(todo)} of {len(cells)} cell(s) already done")
    missing = [c for c in todo if c.checkpoint is not None and not c.checkpoint.is_file()]
    if missing:
        print(f"study: {len(missing)} evaluation cell(s) skipped: their pretraining checkpoint is missing")
        todo = [c for c in todo if c not in missing]
    failed: list[Cell] = []

    def one(item: tuple[int, Cell]) -> None:
        i, cell = item
        rc = _run_cell(cell, threads)
        status = "done" if rc == 0 and cell.done else f"FAILED (exit {rc}; see {cell.run_dir / '.study.log'})"
        print(f"study: [{i}/{len(todo)}] {cell.stage} {cell.variant} {cell.norm} seed {cell.seed}: {status}", flush=True)
        if status != "done":
            failed.append(cell)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(one, enumerate(todo, 1)))
    return failed


# -- summary -----------------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def summarise(cells: list[Cell], spec: StageSpec, best_within: Sequence[str] = ()) -> dict:
    """Rows per (variant, norm): the metric's mean ± std over seeds, per seed, steps and wall time;
    each non-DyT norm is the baseline of the DyT row of the same variant; ``best`` marks each norm's
    best variant among those sharing the ``best_within`` grid labels."""
    groups: dict[tuple[str, str], list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.variant, c.norm), []).append(c)
    rows, references = [], {}
    for (variant, norm), members in groups.items():
        metrics = [_read_json(c.run_dir / "metrics.json") for c in members]
        walls = [_read_json(c.run_dir / ".study_cell.json").get("wall_s") for c in members if c.done]
        values = {c.seed: _number(m.get(spec.metric)) for c, m in zip(members, metrics) if m}
        mean, std = _mean_std([v for v in values.values() if v is not None])
        steps = [s for s in (_number(m.get("steps")) for m in metrics) if s is not None]
        for key in spec.references:
            found = next((_number(m.get(key)) for m in metrics if _number(m.get(key)) is not None), None)
            references.setdefault(key, found)
        rows.append({"variant": variant, "norm": norm, "axes": members[0].axes, "seeds": [c.seed for c in members],
                     "done": len(values),
                     "mean": mean, "std": std, "per_seed": values, "steps": max(steps) if steps else None,
                     "wall_s": _mean_std([w for w in walls if w is not None])[0]})
    baselines = [r for r in rows if r["norm"] != "dyt" and r["mean"]]
    for row in rows:  # the same variant's baseline, else the first variant's (DyT-only variants)
        base = next((r for r in baselines if r["variant"] == row["variant"]), baselines[0] if baselines else None)
        if row["norm"] == "dyt" and base is not None and row["mean"] is not None:
            row["vs_baseline"] = {"norm": base["norm"], "variant": base["variant"],
                                  "difference": row["mean"] - base["mean"], "ratio": row["mean"] / base["mean"]}
    contests: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["mean"] is not None:
            contests.setdefault((r["norm"], *(r["axes"].get(a) for a in best_within)), []).append(r)
    for scored in contests.values():
        (min if spec.goal == "min" else max)(scored, key=lambda r: r["mean"])["best"] = True
    return {"kind": spec.kind, "metric": spec.metric, "goal": spec.goal, "references": references, "rows": rows}


def _fmt(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def summary_markdown(name: str, stages: dict[str, dict]) -> str:
    lines = [f"# Study `{name}`", "", "Mean ± std over seeds (sample std); **bold**: each norm's best variant. "
             "vs baseline: DyT − and DyT / the non-DyT norm of the same variant (of the first variant where the "
             "variant has none, named in brackets).", ""]
    for stage, s in stages.items():
        better = "lower" if s["goal"] == "min" else "higher"
        lines += [f"## {stage}: `{s['metric']}` ({better} is better)", ""]
        if s["references"]:
            lines += ["References: " + ", ".join(f"`{k}` {_fmt(v)}" for k, v in s["references"].items()), ""]
        lines += ["| variant | norm | seeds done | mean ± std | per seed | vs baseline | steps | wall (min) |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in s["rows"]:
            value = "—" if r["mean"] is None else _fmt(r["mean"]) + (f" ± {_fmt(r['std'])}" if r["done"] > 1 else "")
            if r.get("best"):
                value = f"**{value}**"
            per = " / ".join(_fmt(v) for v in r["per_seed"].values())
            vs = r.get("vs_baseline")
            vs_text = f"{vs['difference']:+.4f} ({vs['ratio']:.3f}×)" if vs else ""
            if vs and vs["variant"] != r["variant"]:
                vs_text += f" [{vs['variant']}]"
            wall = _fmt(r["wall_s"] / 60, 1) if r["wall_s"] is not None else "—"
            steps = str(int(r["steps"])) if r["steps"] is not None else "—"
            lines.append(f"| {r['variant']} | {r['norm']} | {r['done']}/{len(r['seeds'])} | {value} | {per} | "
                         f"{vs_text} | {steps} | {wall} |")
        lines.append("")
    return "\n".join(lines)


def _curve(run_dir: Path, key: str) -> dict[int, float]:
    """``key`` against the step from a run's metrics.csv (rows where it is logged)."""
    import csv

    path = run_dir / "metrics.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        return {int(r["step"]): float(r[key]) for r in csv.DictReader(f) if r.get(key) not in (None, "")}


def plot_curves(cells: list[Cell], spec: StageSpec, summary: dict, path: Path) -> Path | None:
    """The stage's metric against the step, mean over seeds, per variant (colour) and norm (line style);
    the references as horizontal lines. Two panels: every value, and a zoom from the best values to each
    curve's median (early validations and spikes that would flatten the comparison leave its axis)."""
    curves: dict[tuple[str, str], list[dict[int, float]]] = {}
    for c in cells:
        curve = _curve(c.run_dir, spec.metric)
        if curve:
            curves.setdefault((c.variant, c.norm), []).append(curve)
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    names = sorted({v for v, _ in curves})
    colours = {v: plt.get_cmap("tab10")(i % 10) for i, v in enumerate(names)}
    medians, lows = [], []
    for (variant, norm), runs in sorted(curves.items()):
        steps = sorted(set.intersection(*(set(r) for r in runs)))
        ys = [sum(r[s] for r in runs) / len(runs) for s in steps]
        if ys:
            medians.append(statistics.median(ys))
            lows.append(min(ys) if spec.goal == "min" else max(ys))
        for ax in axes:
            ax.plot(steps, ys, marker="o", markersize=3, color=colours[variant],
                    linestyle="--" if norm != "dyt" else "-", label=f"{variant} / {norm} (n={len(runs)})")
    for ax in axes:
        for key, value in summary["references"].items():
            if value is not None:
                ax.axhline(value, color="grey", linewidth=0.8, linestyle=":")
                ax.annotate(key, (ax.get_xlim()[0], value), fontsize=7, color="grey", va="bottom")
        ax.set_xlabel("step")
        ax.set_ylabel(spec.metric)
        ax.grid(alpha=0.3)
    axes[0].set_title("every value")
    axes[0].legend(fontsize=7)
    if medians:
        # the zoom spans the best value and every curve's median: where parity is decided, without the
        # first validations or spikes that dwarf it (those leave the axis)
        ends = [*lows, *medians]
        lo, hi = min(ends), max(ends)
        pad = 0.1 * (hi - lo) or 0.01 * abs(hi) or 0.01
        axes[1].set_ylim(lo - pad, hi + pad)
    axes[1].set_title("zoom: best values to each curve's median")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_seeds(summary: dict, path: Path) -> Path | None:
    """Every finished cell's final metric, one row per (variant, norm): the seeds as dots, mean ± std
    as a bar, each variant's non-DyT mean as a dashed tick: the spread that decides a small gap
    (the only picture of a stage whose runs log no curve of the metric, such as GB fine-tuning)."""
    from matplotlib.figure import Figure

    from bio_speech_dyt.report.style import BASELINE_COLOR, norm_color, save

    rows = [r for r in summary["rows"] if r["mean"] is not None]
    if not rows:
        return None
    fig = Figure(figsize=(9, 1.2 + 0.32 * len(rows)))
    ax = fig.subplots()
    for y, r in enumerate(rows):
        colour = norm_color(r["norm"] == "dyt")
        values = [v for v in r["per_seed"].values() if v is not None]
        ax.errorbar(r["mean"], y, xerr=r["std"] if len(values) > 1 else None, fmt="o", color=colour, capsize=3)
        ax.scatter(values, [y] * len(values), s=12, color=colour, alpha=0.5, zorder=3)
        base = r.get("vs_baseline")
        if base and base["variant"] == r["variant"]:
            ax.plot([r["mean"] - base["difference"]] * 2, [y - 0.35, y + 0.35], color=BASELINE_COLOR, linestyle="--")
    ax.set_yticks(range(len(rows)), [f"{r['variant']} / {r['norm']} (n={r['done']})" for r in rows], fontsize=7)
    ax.invert_yaxis()
    better = "lower" if summary["goal"] == "min" else "higher"
    ax.set_xlabel(f"{summary['metric']} ({better} is better)")
    ax.set_title("per seed (dots), mean ± std (bars); dashed: the same variant's non-DyT mean", fontsize=9)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return save(fig, path)


# -- the whole study ---------------------------------------------------------------------


def selected(cells: list[Cell], only: Sequence[str] | None, seeds: Sequence[int] | None) -> list[Cell]:
    """The cells of the variants in ``only`` (an evaluation's ``scratch`` cells always) and, for the
    main stage, of the ``seeds``; None selects all. An unknown variant or seed is a ConfigError."""
    if only is not None:
        unknown = sorted(set(only) - {c.variant for c in cells} - {"scratch"})
        if unknown:
            raise ConfigError(f"--only: {unknown} are not variants of the study ({sorted({c.variant for c in cells})})")
    if seeds is not None:
        unknown_seeds = sorted(set(seeds) - {c.seed for c in cells if c.stage != "evaluate"})
        if unknown_seeds:
            raise ConfigError(f"--seeds: {unknown_seeds} are not seeds of the study")
    return [c for c in cells
            if (only is None or c.variant in only or c.variant == "scratch")
            and (seeds is None or c.stage == "evaluate" or c.seed in seeds)]


def run_study(study: StudyConfig, out: Path, jobs: int = 1, threads: int | None = None,
              evaluate: bool = True, only: Sequence[str] | None = None, seeds: Sequence[int] | None = None) -> dict:
    """Plan, run (resuming), summarise, report. Returns study.json's data (``failed``: cells that failed).
    ``evaluate=False`` runs and summarises the main stage only; a later run does the evaluation.
    ``only`` / ``seeds`` restrict which cells run (a screen before the confirmation); the summary
    and the report cover every finished cell of the study."""
    threads = threads or study.threads
    main_cells, eval_cells = plan(study, out)
    if not evaluate:
        eval_cells = []
    to_run = selected(main_cells + eval_cells, only, seeds)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "study.yaml", yaml.safe_dump(to_dict(study), sort_keys=False))
    failed = (run_cells([c for c in main_cells if c in to_run], jobs, threads)
              + run_cells([c for c in eval_cells if c in to_run], jobs, threads))
    stages = {study.stage.kind: (main_cells, study.stage)}
    if eval_cells:
        stages["evaluate"] = (eval_cells, study.evaluate)
    summary: dict = {"name": study.name, "stages": {}, "plots": [],
                     "failed": [str(c.run_dir) for c in failed]}
    for name, (cells, spec) in stages.items():
        summary["stages"][name] = s = summarise(cells, spec, study.best_within if name != "evaluate" else ())
        for plot in (plot_curves(cells, spec, s, out / f"study_{name}_curves.png"),
                     plot_seeds(s, out / f"study_{name}_seeds.png")):
            if plot is not None:
                summary["plots"].append(plot.name)
    md = summary_markdown(study.name, summary["stages"])
    md += "".join(f"\n![{p}]({p})\n" for p in summary["plots"])
    write_text(out / "study.md", md)
    write_json(out / "study.json", summary)
    if study.report:
        summary["report"] = _report(study, main_cells + eval_cells, out, threads)
        write_json(out / "study.json", summary)
    print(f"study: {out / 'study.md'}" + (f"; {len(failed)} cell(s) failed" if failed else ""))
    return summary


def _report(study: StudyConfig, cells: list[Cell], out: Path, threads: int) -> int:
    """``bsd report`` over every finished run directory (and the analysis of first-seed checkpoints)."""
    runs = [str(c.run_dir) for c in cells if c.done]
    if not runs:
        return 0
    args = ["report", *runs, "--out", str(out / "report")]
    if study.analyze != "none":
        firsts: dict[tuple[str, str], Cell] = {}
        for c in cells:
            if c.stage == study.stage.kind and c.done and (c.variant, c.norm) not in firsts:
                firsts[(c.variant, c.norm)] = c
        for c in firsts.values():
            if study.stage.kind == "pretrain":
                pattern = "last.ckpt" if study.analyze == "last" else "step*.ckpt"
                ckpts = sorted((c.run_dir / "checkpoints").glob(pattern))
            else:  # a fine-tuning's selected model: its first task and seed's best checkpoint
                ckpts = sorted(c.run_dir.glob("*/seed*/checkpoints/best.ckpt"))[:1]
            args += [a for ckpt in ckpts for a in ("--analyze", str(ckpt))]
    with open(out / "report.log", "w") as log:
        rc = subprocess.run(_command(args), stdout=log, stderr=subprocess.STDOUT, env=_env(threads)).returncode
    if rc:
        print(f"study: bsd report failed (exit {rc}); see {out / 'report.log'}")
    return rc


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("study", type=Path, help="study YAML (examples: configs/studies/)")
    p.add_argument("--jobs", type=int, default=1, help="cells run at once (default 1)")
    p.add_argument("--threads", type=int, help="OMP_NUM_THREADS per cell (default: the study's threads)")
    p.add_argument("--out", type=Path, help="study directory (default runs/studies/NAME)")
    p.add_argument("--dry-run", action="store_true", help="print the cells and their commands, run nothing")
    p.add_argument("--no-evaluate", action="store_true",
                   help="run the main stage only (a later run without it does the evaluation stage)")
    p.add_argument("--only", type=lambda v: [x for x in v.split(",") if x], metavar="VARIANT[,VARIANT...]",
                   help="run only these variants' cells (the summary still covers every finished cell)")
    p.add_argument("--seeds", type=lambda v: [int(x) for x in v.split(",") if x], metavar="S[,S...]",
                   help="run only the main stage's cells of these seeds (screen with one, confirm with all)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bsd study", description=__doc__.split("\n")[0])
    add_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """``bsd study`` with parsed arguments; the exit status."""
    try:
        study = load_config(StudyConfig, args.study)
        out = args.out or Path("runs") / "studies" / study.name
        if args.dry_run:
            main_cells, eval_cells = plan(study, out)
            for c in selected(main_cells + ([] if args.no_evaluate else eval_cells), args.only, args.seeds):
                print(("done  " if c.done else "todo  ") + shlex.join(_command(c.args)))
            return 0
        summary = run_study(study, out, jobs=args.jobs, threads=args.threads, evaluate=not args.no_evaluate,
                            only=args.only, seeds=args.seeds)
    except ConfigError as e:
        print(f"bsd study: error: {e}", file=sys.stderr)
        return 2
    return 1 if summary["failed"] or summary.get("report") else 0


if __name__ == "__main__":
    sys.exit(main())
