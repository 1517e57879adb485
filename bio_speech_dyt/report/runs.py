"""Load run directories (pretraining or evaluation, either domain) and pair LN with DyT runs.

A run directory holds ``metrics.json`` and/or ``metrics.csv`` (plus ``config.yaml``,
``alpha.csv`` for DyT pretraining). Missing optional files become notes, never errors;
a directory with neither metrics file is not a run and is rejected by name.
"""
from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

NORM_LABELS = {"layernorm": "LayerNorm", "rmsnorm": "RMSNorm", "dyt": "DyT"}
# config keys that legitimately differ between an LN run and its DyT twin
_NORM_KEY = re.compile(r"(^|\.)(norm|alpha\w*|dyt\w*)($|\.)")  # any key with such a component
_NORM_TOKEN = re.compile(r"layernorm|rmsnorm|dyt", re.IGNORECASE)

Columns = dict[str, np.ndarray]


@dataclass
class Run:
    """One run directory, read."""

    path: Path
    name: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    curves: Columns | None  # metrics.csv, one array per column (NaN where a row has no value)
    alpha: Columns | None  # alpha.csv
    notes: list[str] = field(default_factory=list)
    setting: str = ""  # what tells this run apart from others of its task (set by pair_runs)

    @property
    def task(self) -> str:
        """``config.yaml: task`` (else the ``task`` the harness put into metrics.json)."""
        return str(self.config.get("task") or self.metrics.get("task") or "unknown")

    def section(self, name: str) -> dict[str, Any]:
        """A config section (``model``, ``data``, ...) or ``{}``."""
        value = self.config.get(name)
        return value if isinstance(value, dict) else {}

    @property
    def norm(self) -> str:
        return str(self.section("model").get("norm") or self.metrics.get("norm") or "unknown").lower()

    @property
    def is_dyt(self) -> bool:
        return self.norm == "dyt"

    @property
    def norm_label(self) -> str:
        return NORM_LABELS.get(self.norm, self.norm)

    @property
    def domain(self) -> str:
        """The domain the harness recorded in metrics.json (``genomics``, ``speech``, ...), else
        ``unknown``: never guessed from names."""
        return str(self.metrics.get("domain") or "unknown")

    def number(self, key: str) -> float | None:
        """A finite numeric ``metrics.json`` value, else ``None``."""
        return as_number(self.metrics.get(key))


def as_number(value: Any) -> float | None:
    """``value`` as a finite float; ``None`` for missing, non-numeric, bool, NaN or inf."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _read_columns(path: Path) -> Columns:
    """A CSV file as float columns; blank or non-numeric cells become NaN."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    for i, r in enumerate(rows, start=2):
        if None in r:  # csv.DictReader files surplus fields under the key None
            raise ValueError(f"{path}: line {i} has more fields than the header")
    names = list(rows[0]) if rows else []
    return {n: np.array([_to_float(r.get(n)) for r in rows], dtype=np.float64) for n in names}


def _to_float(cell: str | None) -> float:
    try:
        return float(cell) if cell not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _curves_from_json(metrics: dict) -> Columns | None:
    """The per-epoch validation curve GenomicBenchmarks evaluation keeps in metrics.json
    (``valid_curve: {seed: [{epoch, step, valid_loss, valid_accuracy}, ...]}``) as columns."""
    curve = metrics.get("valid_curve")
    if not isinstance(curve, dict):
        return None
    rows = [{**row, "seed": seed} for seed, seed_rows in curve.items() if isinstance(seed_rows, list)
            for row in seed_rows if isinstance(row, dict)]
    names = list(dict.fromkeys(k for r in rows for k in r))
    return {n: np.array([_to_float(str(r.get(n, ""))) for r in rows], dtype=np.float64) for n in names} if rows else None


def _read_mapping(path: Path, loader) -> dict:
    try:
        data = loader(path.read_text())
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: cannot parse ({e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load_run(path: str | Path, name: str | None = None) -> Run:
    """Read one run directory; raise ``FileNotFoundError``/``ValueError`` naming a bad one."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such run directory")
    if not path.is_dir() or not ((path / "metrics.json").is_file() or (path / "metrics.csv").is_file()):
        raise ValueError(f"{path}: not a run directory (it has neither metrics.json nor metrics.csv)")
    name = name or path.name
    notes: list[str] = []

    def optional(file: str, reader, missing: str, expected: bool = True):
        p = path / file
        if p.is_file():
            return reader(p)
        if expected:
            notes.append(f"`{name}`: no {file} ({missing})")
        return None

    config = optional("config.yaml", lambda p: _read_mapping(p, yaml.safe_load), "task and norm from metrics.json") or {}
    metrics = optional("metrics.json", lambda p: _read_mapping(p, json.loads), "no final numbers") or {}
    curves = optional("metrics.csv", _read_columns, "", expected=False)
    if curves is None:
        curves = _curves_from_json(metrics)
    if curves is None:
        notes.append(f"`{name}`: no metrics.csv and no valid_curve in metrics.json (no curves)")
    run = Run(path, name, config, metrics, curves, None, notes)
    if run.norm == "unknown":
        notes.append(f"`{name}`: norm unknown (no model.norm in config.yaml, no norm in metrics.json)")
    # DyT pretraining writes alpha.csv; evaluation and LN runs need not
    run.alpha = optional("alpha.csv", _read_columns, "no alpha trajectory", run.is_dyt and "pretrain" in run.task)
    if run.curves is not None and "step" not in run.curves and "epoch" not in run.curves:
        notes.append(f"`{name}`: metrics.csv has no step/epoch column; curves skipped")
        run.curves = None
    if run.alpha is not None and "step" not in run.alpha:
        notes.append(f"`{name}`: alpha.csv has no step column; alpha plot skipped")
        run.alpha = None
    return run


def unique_names(paths: list[Path]) -> list[str]:
    """Each run's shortest trailing path that no other run shares (``eval`` → ``w2v_ln/eval``)."""
    parts = [Path(p).resolve().parts for p in paths]

    def name(i: int) -> str:
        for depth in range(1, len(parts[i]) + 1):
            tail = parts[i][-depth:]
            if all(q[-depth:] != tail for j, q in enumerate(parts) if j != i):
                break
        return "/".join(tail)

    return [name(i) for i in range(len(parts))]


def load_runs(paths: list[str | Path]) -> list[Run]:
    """Read every run directory, each named by its shortest distinguishing trailing path."""
    paths = [Path(p) for p in paths]
    return [load_run(p, n) for p, n in zip(paths, unique_names(paths))]


# -- pairing -----------------------------------------------------------------------------


@dataclass
class Pair:
    """LN-family and DyT runs of one task and setting (either side may be missing)."""

    task: str
    setting: str
    baseline: Run | None
    dyt: Run | None

    @property
    def runs(self) -> list[Run]:
        return [r for r in (self.baseline, self.dyt) if r is not None]

    @property
    def label(self) -> str:
        return f"{self.task} ({self.setting})" if self.setting else self.task


def _flatten(data: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(data, dict):
        out: dict[str, str] = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: _NORM_TOKEN.sub("{norm}", str(data))}


def _short(value: str, width: int = 32) -> str:
    return value if len(value) <= width else "…" + value[-(width - 1):]


def pair_runs(runs: list[Run]) -> list[Pair]:
    """Group runs by task and by the config values (norm-related keys aside) that differ
    within the task; in each group the i-th LN-family run is paired with the i-th DyT run.
    Sets ``run.setting`` (e.g. ``"seed=2"``; empty when a task's runs differ only in norm)."""
    by_task: dict[str, list[Run]] = {}
    for r in runs:
        by_task.setdefault(r.task, []).append(r)
    pairs: list[Pair] = []
    for task, members in by_task.items():
        flat = [{k: v for k, v in _flatten(r.config).items() if not _NORM_KEY.search(k)} for r in members]
        keys = sorted(set().union(*flat))
        varying = [k for k in keys if len({f.get(k, "∅") for f in flat}) > 1]
        groups: dict[str, list[Run]] = {}
        for r, f in zip(members, flat):
            r.setting = ", ".join(f"{k}={_short(f.get(k, '∅'))}" for k in varying)
            groups.setdefault(r.setting, []).append(r)
        for setting, group in groups.items():
            base = [r for r in group if not r.is_dyt]
            dyt = [r for r in group if r.is_dyt]
            for i in range(max(len(base), len(dyt))):
                pairs.append(Pair(task, setting, base[i] if i < len(base) else None, dyt[i] if i < len(dyt) else None))
    return pairs
