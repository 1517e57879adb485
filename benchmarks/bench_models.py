"""``bsd bench models``: training-step throughput of every model with its native norm and
with DyT, measured side by side in one run; prints a table and writes JSON.

Each domain contributes rows through ``benchmarks/models_<domain>.py: run(full) -> list[dict]``
(keys: model, norm, step_ms (median), throughput, unit, and ``step_ms_repeats`` /
``step_cpu_ms_repeats``: every timed step's wall and process CPU time, native and DyT steps
interleaved). DyT rows get ``dyt_over_native``, DyT throughput / native throughput: the median
over repeats of the ratio of the two steps of a repeat, with its min and max
(``dyt_over_native_min`` / ``_max``), so that the machine's load, which changes between repeats,
hits both norms alike; and ``dyt_over_native_cpu``, the same from CPU time. On a shared machine
the CPU time is the steadier measure with one thread (``OMP_NUM_THREADS=1``): it does not count
the time the process waits for a core. With more threads it also counts threads spinning at a
barrier for a descheduled one.
"""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).parent
DOMAINS = ("genomics", "speech")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def add_ratios(rows: list[dict]) -> None:
    """``dyt_over_native`` (median, min, max over repeats) on each DyT row, from the model's native row."""
    for dyt in (r for r in rows if r.get("norm") == "dyt"):
        native = next(r for r in rows if r["model"] == dyt["model"] and r["norm"] != "dyt")
        ratios = [n / d for n, d in zip(native["step_ms_repeats"], dyt["step_ms_repeats"])]
        dyt["dyt_over_native"] = statistics.median(ratios)
        dyt["dyt_over_native_min"], dyt["dyt_over_native_max"] = min(ratios), max(ratios)
        cpu = [n / d for n, d in zip(native["step_cpu_ms_repeats"], dyt["step_cpu_ms_repeats"])]
        dyt["dyt_over_native_cpu"] = statistics.median(cpu)
        dyt["dyt_over_native_cpu_min"], dyt["dyt_over_native_cpu_max"] = min(cpu), max(cpu)


def format_table(rows: list[dict]) -> str:
    rows = [{k: v for k, v in r.items() if not k.endswith("_repeats")} for r in rows]
    cols = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("model", "norm"), k))
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in cols}
    line = " | ".join(c.ljust(widths[c]) for c in cols)
    sep = "-|-".join("-" * widths[c] for c in cols)
    body = [" | ".join(_fmt(r.get(c)).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join([line, sep, *body])


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def main(full: bool = False, out: Path = Path("benchmarks/results")) -> list[dict]:
    rows: list[dict] = []
    for domain in DOMAINS:
        rows += _load(f"models_{domain}").run(full)
    add_ratios(rows)
    print(f"Model training-step throughput ({platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__})")
    print(format_table(rows))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=out, delete=False, suffix=".tmp") as f:
        json.dump({"rows": rows, "threads": torch.get_num_threads()}, f, indent=2)
    os.replace(f.name, out / "models.json")
    return rows
