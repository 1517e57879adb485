"""Typed configs: dataclasses with defaults, loaded from YAML, overridden by ``--set a.b=c``.

Every job config is a dataclass tree. ``load_config(cls, path, overrides)`` builds it and
raises :class:`ConfigError` for unknown keys (listing the valid ones), wrong types, values out
of range and missing files — before a job writes anything. Closed choices are ``Literal``
types; ranges are ``Annotated[float, Range(...)]``; every float must be finite. A YAML may
extend another with ``base: OTHER.yaml`` (relative to the file) and state only what differs.
``to_dict`` gives the fully resolved form written to ``RUN_DIR/config.yaml``.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Sequence, TypeVar

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


@dataclasses.dataclass(frozen=True)
class Range:
    """A bound on a number: ``Annotated[int, Range(min=1)]``; ``allow`` lists extra accepted values
    (e.g. ``-1`` for "unbounded")."""

    min: float | None = None
    max: float | None = None
    min_open: bool = False  # min itself excluded
    allow: tuple = ()

    def check(self, value: Any, where: str) -> None:
        if value is None or value in self.allow:
            return
        low_bad = self.min is not None and (value <= self.min if self.min_open else value < self.min)
        if low_bad or (self.max is not None and value > self.max):
            lo = "" if self.min is None else ("> " if self.min_open else ">= ") + f"{self.min:g}"
            hi = "" if self.max is None else f"<= {self.max:g}"
            extra = f" (or {', '.join(map(str, self.allow))})" if self.allow else ""
            raise ConfigError(f"{where}: must be {' and '.join(x for x in (lo, hi) if x)}{extra}, got {value!r}")


Positive = Range(min=0, min_open=True)
NonNegative = Range(min=0)
AtLeastOne = Range(min=1)
Fraction = Range(min=0, max=1)


#: what Lightning's ``Trainer(precision=...)`` accepts (ints as YAML writes them)
Precision = Literal[64, 32, 16, "64", "32", "16", "bf16", "64-true", "32-true", "16-true", "bf16-true",
                    "16-mixed", "bf16-mixed", "transformer-engine", "transformer-engine-float16"]


@dataclasses.dataclass
class OptimConfig:
    lr: Annotated[float, NonNegative] = 1e-3  # 0 is allowed (a run that must not move the weights)
    weight_decay: Annotated[float, NonNegative] = 0.1
    betas: tuple[Annotated[float, Fraction], Annotated[float, Fraction]] = (0.9, 0.999)
    eps: Annotated[float, Positive] = 1e-8
    scheduler: Literal["cosine", "polynomial", "constant"] = "cosine"
    warmup_steps: Annotated[int, NonNegative] = 0
    min_lr_ratio: Annotated[float, Fraction] = 0.0  # cosine floor / polynomial end, as a fraction of lr
    power: Annotated[float, Positive] = 1.0  # polynomial decay power
    gradient_clip_val: Annotated[float, NonNegative] = 1.0  # 0 disables clipping
    # warm-up from this absolute lr at step 0, linearly to lr at step warmup_steps (timm's
    # warmup_lr_init, hyena-dna/Caduceus: 1e-6); None: lr * (step + 1) / warmup_steps (fairseq's)
    warmup_init_lr: Annotated[float, NonNegative] | None = None
    # True: the decay starts after the warm-up (timm's warmup_prefix, the Caduceus hg38 recipe);
    # False: the decay is counted from step 0 and the warm-up overrides its start (timm's default)
    warmup_prefix: bool = True
    # the step at which the decay reaches its floor; None: the run's length. timm's t_initial is
    # schedule_steps - warmup_steps with warmup_prefix, schedule_steps without
    schedule_steps: Annotated[int, AtLeastOne] | None = None
    # parameter kinds without weight decay: norms (LayerNorm/RMSNorm/DyT, alpha included), biases,
    # embeddings; scalars and what a module's no_weight_decay() names never decay. [] = fairseq's
    no_decay: list[str] = dataclasses.field(default_factory=lambda: ["norms", "biases"])
    # warm-up as a fraction of the schedule's horizon (schedule_steps or the run's length), instead of
    # warmup_steps (timm's warmup_t = ratio * its horizon in the hyena-dna / Caduceus experiment files)
    warmup_ratio: Annotated[float, Fraction] | None = None
    # beyond the paper, an ablation: DyT's alphas in their own group at lr * alpha_lr_scale (no decay),
    # so that Adam can move them several-fold within a short run; 1 keeps them with the other norms
    alpha_lr_scale: Annotated[float, Positive] = 1.0


@dataclasses.dataclass
class TrainerConfig:
    max_steps: Annotated[int, Range(min=1, allow=(-1,))] = -1  # -1: bounded by max_epochs
    max_epochs: Annotated[int, AtLeastOne] | None = None
    checkpoint_every_n_steps: Annotated[int, AtLeastOne] = 500
    val_check_interval: Annotated[int, AtLeastOne] | None = None  # in optimizer steps; None = once per epoch
    limit_val_batches: Annotated[int, AtLeastOne] | Annotated[float, Fraction] | None = None  # batches, or a fraction (float)
    log_every_n_steps: Annotated[int, AtLeastOne] = 10
    devices: Annotated[int, AtLeastOne] | Literal["auto"] = 1
    num_nodes: Annotated[int, AtLeastOne] = 1
    strategy: Literal["auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true", "fsdp", "single_device"] = "auto"
    precision: Precision = "32-true"  # as Lightning accepts it: 32, "bf16-mixed", 16, ...
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    accumulate_grad_batches: Annotated[int, AtLeastOne] = 1
    deterministic: bool = False
    nonfinite_loss: Literal["stop", "skip"] = "stop"
    progress_bar: bool = True
    loggers: list[Literal["csv", "tensorboard", "wandb"]] = dataclasses.field(default_factory=lambda: ["csv"])


BASE_KEY = "base"


def read_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """A YAML mapping; ``base: OTHER.yaml`` (relative to this file) is read first and this
    file's keys are merged over it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    base = data.pop(BASE_KEY, None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: 'base' must be a file name, got {base!r}")
    base_path = (path.parent / base).resolve()
    if base_path in _seen:
        raise ConfigError(f"{path}: 'base' chain loops back to {base_path}")
    return deep_merge(read_yaml(base_path, (*_seen, path.resolve())), data)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; allow the lossless int→float widening."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Annotated:
        inner, *constraints = typing.get_args(tp)
        value = _coerce(value, inner, where)
        for c in constraints:
            if isinstance(c, Range):
                c.check(value, where)
        return value
    if origin is Literal:
        choices = typing.get_args(tp)
        for c in choices:  # exact type too: True is not 1, "32" and 32 are both listed where valid
            if value == c and type(value) is type(c):
                return value
        raise ConfigError(f"{where}: must be one of {', '.join(repr(c) for c in choices)}; got {value!r}")
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
        # a value of the right type but out of range says so, rather than listing the types
        specific = [e for e in errors if not e.startswith(f"{where}: expected")]
        if specific:
            raise ConfigError(specific[0])
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
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected float, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: must be a finite number, got {value!r}")
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
    hints = typing.get_type_hints(cls, include_extras=True)
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
