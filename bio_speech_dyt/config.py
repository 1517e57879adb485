"""Typed configs: dataclasses with defaults, loaded from YAML, overridden by ``--set a.b=c``.

Every job config is a dataclass tree. ``load_config(cls, path, overrides)`` builds it and
raises :class:`ConfigError` for unknown keys (listing the valid ones), wrong types and
missing files. ``to_dict`` gives the fully resolved form written to ``RUN_DIR/config.yaml``.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import yaml

__all__ = [
    "ConfigError",
    "JobConfig",
    "OptimConfig",
    "TrainerConfig",
    "load_config",
    "from_dict",
    "to_dict",
    "parse_overrides",
    "read_yaml",
]

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that cannot be applied."""


@dataclasses.dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    scheduler: str = "cosine"  # cosine | polynomial | constant
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0  # cosine floor / polynomial end, as a fraction of lr
    power: float = 1.0  # polynomial decay power
    gradient_clip_val: float = 1.0  # 0 disables clipping
    # warm-up from this absolute lr at step 0, linearly to lr at step warmup_steps (timm's
    # warmup_lr_init, hyena-dna/Caduceus: 1e-6); None: lr * (step + 1) / warmup_steps (fairseq's)
    warmup_init_lr: float | None = None
    # True: the decay starts after the warm-up (timm's warmup_prefix, the Caduceus hg38 recipe);
    # False: the decay is counted from step 0 and the warm-up overrides its start (timm's default)
    warmup_prefix: bool = True
    # the step at which the decay reaches its floor; None: the run's length. timm's t_initial is
    # schedule_steps - warmup_steps with warmup_prefix, schedule_steps without
    schedule_steps: int | None = None
    # parameter kinds without weight decay: norms (LayerNorm/RMSNorm/DyT, alpha included), biases,
    # embeddings; scalars and what a module's no_weight_decay() names never decay. [] = fairseq's
    no_decay: list[str] = dataclasses.field(default_factory=lambda: ["norms", "biases"])
    # warm-up as a fraction of the schedule's horizon (schedule_steps or the run's length), instead of
    # warmup_steps (timm's warmup_t = ratio * its horizon in the hyena-dna / Caduceus experiment files)
    warmup_ratio: float | None = None


@dataclasses.dataclass
class TrainerConfig:
    max_steps: int = -1
    max_epochs: int | None = None
    checkpoint_every_n_steps: int = 500
    val_check_interval: int | None = None  # in optimizer steps; None = once per epoch
    limit_val_batches: int | float | None = None  # batches, or a fraction of the validation set (float)
    log_every_n_steps: int = 10
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    accelerator: str = "auto"
    accumulate_grad_batches: int = 1
    deterministic: bool = False
    nonfinite_loss: str = "stop"  # stop | skip
    progress_bar: bool = True


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; allow the lossless int→float widening."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arm in typing.get_args(tp):
            if arm is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, arm, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (list, Sequence, typing.Sequence) or tp is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (arg,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, arg, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} items, got {value!r}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        key_t, value_t = typing.get_args(tp) or (Any, Any)
        return {_coerce(k, key_t, where): _coerce(v, value_t, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "6e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected float, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected int, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected bool, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected str, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return value


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys are an error listing valid keys."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; "
            f"valid keys{' under ' + where if where else ''}: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(value, hints[name], f"{where}.{name}" if where else name)
    return cls(**kwargs)


def to_dict(cfg: Any) -> Any:
    """Dataclass tree → plain YAML-safe data (tuples become lists)."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, Path):
        return str(cfg)
    return cfg


def parse_overrides(items: Sequence[str]) -> dict:
    """``["a.b=3", "c=x"]`` → nested dict; values parsed as YAML scalars/lists."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set: bad key in {item!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set: {key} conflicts with another override")
        node[parts[-1]] = value
    return out


def deep_merge(base: dict, update: Mapping) -> dict:
    """``update`` over ``base``, recursively; an empty mapping in ``update`` replaces (``--set x={}`` clears)."""
    merged = dict(base)
    for k, v in update.items():
        if isinstance(v, Mapping) and v and isinstance(merged.get(k), Mapping):
            merged[k] = deep_merge(dict(merged[k]), v)
        else:
            merged[k] = v
    return merged


def load_config(
    cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = (), data: Mapping | None = None
) -> T:
    """YAML file (or ``data``) + ``--set`` overrides → validated dataclass ``cls``."""
    raw = dict(data) if data is not None else {}
    if path is not None:
        raw = deep_merge(raw, read_yaml(path))
    raw = deep_merge(raw, parse_overrides(overrides))
    try:
        return from_dict(cls, raw)
    except ConfigError as e:
        if path is not None:
            raise ConfigError(f"{path}: {e}") from None
        raise


@dataclasses.dataclass
class JobConfig:
    """Fields every job has; domain configs subclass it and add ``model`` and ``data``."""

    task: str = ""
    seed: int = 0
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
