"""Markdown tables: the runs, one LN-vs-DyT table per metric, GenomicBenchmarks accuracy and
the paper's reference numbers. Each table function returns ``(markdown, json_rows)``."""
from __future__ import annotations

from typing import Any, Sequence

from bio_speech_dyt.report.metrics import PAPER_REFERENCE, GBEntry, MetricSpec, gb_entries
from bio_speech_dyt.report.runs import Pair, Run

DASH = "—"
BASELINE_HEADER = "LN / RMSNorm"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (cells are ``str()``-ed, pipes escaped)."""

    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _fmt(fmt: str, value: float | None) -> str:
    return DASH if value is None else fmt.format(value)


def _compare(spec_ratio: bool, base: float | None, dyt: float | None) -> float | None:
    if base is None or dyt is None:
        return None
    if spec_ratio:
        return dyt / base if base else None
    return dyt - base


def _compare_text(spec: MetricSpec, value: float | None) -> str:
    if value is None:
        return DASH
    return f"×{value:.3f}" if spec.ratio else ("+" if value >= 0 else "") + spec.fmt.format(value)


def _runs_cell(pair: Pair) -> str:
    base = f"`{pair.baseline.name}` ({pair.baseline.norm_label})" if pair.baseline else DASH
    dyt = f"`{pair.dyt.name}`" if pair.dyt else DASH
    return f"{base} · {dyt}"


def _pair_json(pair: Pair) -> dict[str, Any]:
    return {"task": pair.task, "setting": pair.setting,
            "baseline_run": pair.baseline.name if pair.baseline else None,
            "baseline_norm": pair.baseline.norm if pair.baseline else None,
            "dyt_run": pair.dyt.name if pair.dyt else None}


def runs_table(runs: list[Run]) -> str:
    """Every run: task, norm, setting, steps, parameters and what of it is plotted."""
    rows = []
    for r in runs:
        has = [what for what, ok in (("curves", r.curves is not None), ("alpha", r.alpha is not None)) if ok]
        steps, params = r.number("steps"), r.number("num_parameters")
        rows.append([f"`{r.name}`", r.task, r.norm_label, r.setting or DASH,
                     _fmt("{:.0f}", steps), _fmt("{:,.0f}", params), ", ".join(has) or DASH])
    return markdown_table(["Run", "Task", "Norm", "Setting", "Steps", "Parameters", "Plotted"], rows)


def metric_table(spec: MetricSpec, pairs: list[Pair]) -> tuple[str, list[dict]] | None:
    """LN-family and DyT values of one ``metrics.json`` key side by side; ``None`` if no run has it."""
    present = [p for p in pairs if any(r.number(spec.key) is not None for r in p.runs)]
    if not present:
        return None
    context = [k for k in spec.context if any(r.number(k) is not None for p in present for r in p.runs)]
    rows, json_rows = [], []
    for p in present:
        base = p.baseline.number(spec.key) if p.baseline else None
        dyt = p.dyt.number(spec.key) if p.dyt else None
        cmp = _compare(spec.ratio, base, dyt)
        unit = spec.unit_for(p.runs[0])
        extra = {k: next((v for r in p.runs if (v := r.number(k)) is not None), None) for k in context}
        rows.append([p.task, p.setting or DASH, _runs_cell(p), unit, _fmt(spec.fmt, base), _fmt(spec.fmt, dyt),
                     _compare_text(spec, cmp), *(_fmt(spec.fmt, v) for v in extra.values())])
        json_rows.append({**_pair_json(p), "unit": unit, "baseline": base, "dyt": dyt,
                          ("dyt_over_baseline" if spec.ratio else "dyt_minus_baseline"): cmp, **extra})
    cmp_header = "DyT / LN" if spec.ratio else "DyT − LN"
    headers = ["Task", "Setting", "Runs (LN · DyT)", "Unit", BASELINE_HEADER, "DyT", cmp_header, *(f"`{k}`" for k in context)]
    md = markdown_table(headers, rows)
    return md, json_rows


# -- GenomicBenchmarks -------------------------------------------------------------------


def _pct(e: GBEntry | None) -> str:
    if e is None:
        return DASH
    return f"{100 * e.accuracy:.2f}" + (f" ± {100 * e.std:.2f}" if e.std is not None else "")


def _seeds(e: GBEntry | None) -> str:
    return ", ".join(f"{100 * a:.1f}" for _, a in e.per_seed) if e and e.per_seed else DASH


def _mean(entries: dict[str, GBEntry], names: list[str]) -> float:
    return sum(entries[n].accuracy for n in names) / len(names)


def gb_table(pairs: list[Pair]) -> tuple[str, list[dict]] | None:
    """Test accuracy (%) ± std over seeds, per seed, and the mean over datasets where both
    norms were evaluated on two or more of the same datasets."""
    rows, json_rows = [], []
    for p in pairs:
        base = {e.dataset: e for e in gb_entries(p.baseline)} if p.baseline else {}
        dyt = {e.dataset: e for e in gb_entries(p.dyt)} if p.dyt else {}
        for name in sorted(set(base) | set(dyt)):
            b, d = base.get(name), dyt.get(name)
            diff = 100 * (d.accuracy - b.accuracy) if b and d else None
            rows.append([p.task, p.setting or DASH, name, _runs_cell(p), _pct(b), _pct(d),
                         DASH if diff is None else f"{diff:+.2f}", _seeds(b), _seeds(d)])
            json_rows.append({**_pair_json(p), "dataset": name, "baseline": b.as_dict() if b else None,
                              "dyt": d.as_dict() if d else None, "dyt_minus_baseline_pp": diff})
        common = sorted(set(base) & set(dyt))
        if len(common) >= 2:
            mean_b, mean_d = 100 * _mean(base, common), 100 * _mean(dyt, common)
            rows.append([p.task, p.setting or DASH, f"**mean of {len(common)}**", _runs_cell(p), f"**{mean_b:.2f}**",
                         f"**{mean_d:.2f}**", f"**{mean_d - mean_b:+.2f}**", DASH, DASH])
            json_rows.append({**_pair_json(p), "dataset": "mean", "datasets": common, "baseline_mean_pct": mean_b,
                              "dyt_mean_pct": mean_d, "dyt_minus_baseline_pp": mean_d - mean_b})
    if not rows:
        return None
    headers = ["Task", "Setting", "Dataset", "Runs (LN · DyT)", f"{BASELINE_HEADER} (%)", "DyT (%)", "DyT − LN (pp)",
               "LN per seed (%)", "DyT per seed (%)"]
    return markdown_table(headers, rows), json_rows


def paper_table(domains: set[str]) -> tuple[str, list[dict]]:
    """The paper's numbers for the domains present (all of them when no domain is known)."""
    refs = [r for r in PAPER_REFERENCE if r["domain"] in domains] or list(PAPER_REFERENCE)
    rows = [[r["model"], r["metric"], r["unit"], f"{r['ln']:.2f}", f"{r['dyt']:.2f}", f"{r['dyt'] - r['ln']:+.2f}"]
            for r in refs]
    md = markdown_table(["Model (paper)", "Metric", "Unit", BASELINE_HEADER, "DyT", "DyT − LN"], rows)
    return md, refs


# -- norm analysis -----------------------------------------------------------------------


def analysis_tables(result: dict[str, Any]) -> str:
    """Fitted tanh per LN-family layer and learned alpha per DyT layer of one analysed model."""
    parts = []
    if result.get("norm_layers"):
        rows = [[f"`{r['path']}`", r["kind"], f"{r['alpha']:.4g}" + (f" ({r['regime']}: search bound)" if r["regime"] != "tanh" else ""),
                 f"{r['scale']:.3f}", f"{r['r2']:.3f}", f"{r['input_std']:.3g}", f"{r['points']:,}"]
                for r in result["norm_layers"]]
        parts.append("Best-fitting `scale · tanh(α x)` to each norm's output (before affine) vs input:\n\n" + markdown_table(
            ["Layer", "Kind", "fitted α", "scale", "R²", "input std", "points"], rows))
    if result.get("dyt_layers"):
        rows = [[f"`{r['path']}`", f"{r['alpha']:.4g}", f"[{r['weight_min']:.3f}, {r['weight_max']:.3f}]",
                 DASH if r.get("input_std") is None else f"{r['input_std']:.3g}",
                 DASH if r["saturated_share"] is None else f"{100 * r['saturated_share']:.2f}%", f"{r['points']:,}"]
                for r in result["dyt_layers"]]
        parts.append("Learned DyT parameters, the input's std and the share of the batch in the saturated region:\n\n"
                     + markdown_table(["Layer", "learned α", "weight range", "input std", "|α x| > 2", "points"], rows))
    return "\n".join(parts)
