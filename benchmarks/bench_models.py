"""``bsd bench models``: training-step throughput of every model with its native norm and
with DyT, measured side by side in one run; prints a table and writes JSON.

Each domain contributes rows through ``benchmarks/models_<domain>.py: run(full) -> list[dict]``
(keys: model, norm, step_ms, throughput, unit, and ``dyt_over_native`` on DyT rows).
"""
from __future__ import annotations

import importlib.util
import json
import platform
from pathlib import Path

import torch

HERE = Path(__file__).parent
DOMAINS = ("genomics", "speech")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def format_table(rows: list[dict]) -> str:
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
    print(f"Model training-step throughput ({platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__})")
    print(format_table(rows))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "models.json").write_text(json.dumps({"rows": rows, "threads": torch.get_num_threads()}, indent=2))
    return rows
