"""``make_report``: run directories (+ checkpoints to analyse) → ``report.md``, ``report.json``
and PNG figures in one output folder."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bio_speech_dyt.io import write_json, write_text
from bio_speech_dyt.report.analysis import analyze_checkpoint, run_dir_of
from bio_speech_dyt.report.metrics import METRICS
from bio_speech_dyt.report.plots import alpha_trajectories, loss_curves, throughput_bars
from bio_speech_dyt.report.runs import Pair, Run, load_runs, pair_runs, unique_names
from bio_speech_dyt.report.tables import analysis_tables, gb_table, metric_table, paper_table, runs_table

PAPER_NOTE = ("Numbers from Zhu et al. (CVPR 2025) at GPU scale on the full datasets, for context only: "
              "they are **not comparable** to CPU-scale demo runs on synthetic or sampled data.")


class _Doc:
    """Markdown being written, the JSON beside it and the notes of what was skipped."""

    def __init__(self, out: Path):
        self.out = out
        self.md: list[str] = []
        self.data: dict[str, Any] = {"runs": [], "metrics": {}, "plots": [], "analysis": [], "notes": []}

    def add(self, *blocks: str) -> None:
        self.md.extend(blocks)

    def image(self, path: Path | None, caption: str, missing: str) -> None:
        if path is None:
            self.note(missing)
            return
        rel = path.relative_to(self.out).as_posix()
        self.data["plots"].append(rel)
        self.add(f"![{caption}]({rel})\n")

    def note(self, text: str) -> None:
        self.data["notes"].append(text)


def _run_json(r: Run) -> dict[str, Any]:
    alpha_final = None
    if r.alpha is not None:
        alpha_final = {k: float(v[np.isfinite(v)][-1]) for k, v in r.alpha.items() if k != "step" and np.isfinite(v).any()}
    return {"name": r.name, "path": str(r.path), "task": r.task, "norm": r.norm, "domain": r.domain,
            "setting": r.setting, "metrics": r.metrics, "alpha_final": alpha_final}


def _groups(pairs: list[Pair]) -> dict[str, list[Pair]]:
    out: dict[str, list[Pair]] = {}
    for p in pairs:
        out.setdefault(p.label, []).append(p)
    return out


def _run_sections(doc: _Doc, runs: list[Run]) -> None:
    pairs = pair_runs(runs)
    doc.data["runs"] = [_run_json(r) for r in runs]
    doc.add("## Runs\n", runs_table(runs),
            "Runs are paired by task and by every config value other than the norm (the *Setting* column shows "
            "what else differs within a task). LN / RMSNorm is the model's native norm (RMSNorm for Caduceus).\n")
    doc.add("## Results\n")
    gb = gb_table(pairs)
    if gb:
        doc.add("### GenomicBenchmarks test accuracy (`test_accuracy`, mean ± std over seeds)\n", gb[0])
        doc.data["genomic_benchmarks"] = gb[1]
    for spec in METRICS:
        table = metric_table(spec, pairs)
        if table:
            doc.add(f"### {spec.title} (`{spec.key}`)\n", table[0])
            doc.data["metrics"][spec.key] = table[1]
    paper_md, refs = paper_table({r.domain for r in runs})
    doc.add("### Paper reference numbers\n", PAPER_NOTE + "\n", paper_md)
    doc.data["paper_reference"] = refs

    curves = [(loss_curves(group, doc.out), f"curves {label}", f"{label}: metrics.csv has no loss/accuracy column")
              for label, group in _groups(pairs).items()
              if any(r.curves is not None for p in group for r in p.runs)]  # runs without metrics.csv: noted already
    _figures(doc, "Loss curves", curves)
    alphas = [(alpha_trajectories(r, doc.out), f"alpha {r.name}", f"`{r.name}`: alpha.csv has no layer columns")
              for r in runs if r.is_dyt and r.alpha is not None]
    _figures(doc, "DyT alpha over training", alphas)
    _figures(doc, "Throughput", [(throughput_bars(pairs, doc.out), "throughput",
                                  "throughput: no run reports tokens_per_s or samples_per_s")])


def _figures(doc: _Doc, heading: str, figures: list[tuple[Path | None, str, str]]) -> None:
    """A section of ``(png or None, caption, note if None)``; no heading when nothing was drawn."""
    if any(path is not None for path, _, _ in figures):
        doc.add(f"## {heading}\n")
    for path, caption, missing in figures:
        doc.image(path, caption, missing)


def _analysis_sections(doc: _Doc, checkpoints: list[Path]) -> None:
    doc.add("## Norm layer analysis (output vs input, as in Zhu et al.)\n")
    # runs named by their shortest distinguishing trailing path, so that plots of runs alike in name
    # (a study's .../VARIANT/NORM/seed0) do not overwrite each other
    run_dirs = sorted({run_dir_of(c) for c in checkpoints})
    name_of = dict(zip(run_dirs, unique_names(run_dirs)))
    for ckpt in checkpoints:
        result = analyze_checkpoint(ckpt, doc.out, name=name_of[run_dir_of(ckpt)])
        doc.data["analysis"].append(result)
        doc.add(f"### {result['title']}\n", f"Checkpoint: `{ckpt}`\n")
        for name in result["plots"]:
            doc.image(doc.out / name, name, "")
        doc.add(analysis_tables(result))
        for n in result["notes"]:
            doc.note(f"{ckpt}: {n}")


def make_report(runs: Sequence[str | Path], out: str | Path, analyze: Sequence[str | Path] = ()) -> dict[str, Any]:
    """Merge run directories (pretraining or evaluation, either domain) and the analysis of
    checkpoints into ``out/report.md`` + ``out/report.json`` + PNGs; return the JSON data."""
    out = Path(out)
    checkpoints = [Path(c) for c in analyze]
    if not runs and not checkpoints:
        raise ValueError("nothing to report: give run directories and/or --analyze CKPT")
    for c in checkpoints:
        if not c.is_file():
            raise FileNotFoundError(f"{c}: no such checkpoint")
    loaded = load_runs(list(runs))
    out.mkdir(parents=True, exist_ok=True)
    doc = _Doc(out)
    doc.add("# LN vs DyT report\n",
            f"{len(loaded)} run(s), {len(checkpoints)} analysed checkpoint(s). In every figure LayerNorm/RMSNorm runs "
            f"are blue and DyT runs orange. Differences are DyT − LN (ratios DyT / LN for throughput).\n")
    if loaded:
        _run_sections(doc, loaded)
    if checkpoints:
        _analysis_sections(doc, checkpoints)
    notes = [n for r in loaded for n in r.notes] + doc.data["notes"]  # run files first, then skipped plots
    doc.data["notes"] = notes
    if notes:
        doc.add("## Notes (skipped)\n", "\n".join(f"- {n}" for n in notes) + "\n")
    write_text(out / "report.md", "\n".join(doc.md))
    write_json(out / "report.json", doc.data)
    print(f"report: {out / 'report.md'} ({len(doc.data['plots'])} plots, {len(notes)} notes)")
    return doc.data
