"""The task registry: what a domain plugs into the core.

A domain (genomics, speech, or a third-party package) declares a :class:`Domain` and names it
in its package metadata under the entry-point group ``bio_speech_dyt.tasks``::

    [project.entry-points."bio_speech_dyt.tasks"]
    genomics = "genomics.tasks:DOMAIN"

The core finds every domain through :func:`domains` and never imports a domain module itself:
``bsd pretrain`` looks a YAML's ``task`` up with :func:`get_task`, ``bsd prepare`` /
``bsd evaluate`` / ``bsd import`` offer the verbs the domains declare, and the report reads
run directories, which the harness makes self-describing (task, domain, loss unit).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Literal, Protocol, Sequence

ENTRY_POINT_GROUP = "bio_speech_dyt.tasks"

TaskKind = Literal["pretrain", "evaluate"]


class RestoreFn(Protocol):
    def __call__(self, ckpt_path: Path) -> tuple[Any, Any]:
        """``(typed config, model in eval mode)`` of a checkpoint of this task."""


@dataclasses.dataclass(frozen=True)
class Task:
    """One job a YAML's ``task`` key names.

    ``run(cfg, run)`` does the work inside a started run directory (``run`` is a
    :class:`bio_speech_dyt.harness.RunDir`) and returns the metrics written to
    ``metrics.json``. ``restore`` rebuilds the model of one of its checkpoints;
    ``analysis_inputs(cfg, ckpt) -> (model, forward)`` feeds that model one real batch (the
    report's norm analysis). ``reports`` names the ``metrics.json`` keys it produces.
    """

    name: str
    domain: str
    kind: TaskKind
    #: the typed config dataclass, or a function returning it (a domain whose config module
    #: imports heavy libraries declares it lazily)
    config: type | Callable[[], type]
    run: Callable[[Any, Any], dict]
    loss_unit: str  # unit of its losses in metrics.csv / metrics.json: "nats/token", "bits", ...
    reports: tuple[str, ...] = ()
    restore: RestoreFn | None = None
    analysis_inputs: Callable[[Any, Path], tuple[Any, Callable[[], Any]]] | None = None

    @property
    def config_class(self) -> type:
        return self.config if dataclasses.is_dataclass(self.config) else self.config()


@dataclasses.dataclass(frozen=True)
class Verb:
    """A ``bsd prepare NAME`` / ``bsd evaluate NAME`` sub-command a domain adds:
    ``add_arguments(parser)`` declares its flags, ``run(args)`` does it."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Any]


class Importer(Protocol):
    """Published-checkpoint import for ``bsd import`` / ``bsd export`` (see a domain's ``pretrained``)."""

    def detect(self, src: Path) -> str | None: ...

    def import_checkpoint(self, src: Path, out: Path, **options: Any) -> dict: ...


@dataclasses.dataclass(frozen=True)
class DemoStep:
    """One pretrain-then-evaluate pipeline of ``bsd demo`` for one norm.

    ``pretrain_config``: the YAML (``{norm}`` is filled in); ``evaluate(norm, ckpt, out, resume)``
    evaluates the pretrained checkpoint into ``out``."""

    name: str  # run-name prefix, e.g. "hyenadna"
    title: str
    pretrain_config: str
    evaluate_title: str
    evaluate_suffix: str
    evaluate: Callable[[str, Path, Path, bool], Any]
    norms: tuple[str, ...] = ("layernorm", "dyt")


@dataclasses.dataclass(frozen=True)
class Domain:
    name: str
    tasks: Sequence[Task] = ()
    prepare: Sequence[Verb] = ()
    evaluate: Sequence[Verb] = ()
    #: ``make_synthetic(out, seed)`` writes this domain's part of ``bsd prepare synthetic``; returns
    #: the sub-folders it made
    make_synthetic: Callable[[Path, int], Sequence[Path]] | None = None
    demo: Sequence[DemoStep] = ()
    #: a callable returning the importer (imported lazily: checkpoint code is heavy)
    importer: Callable[[], Importer] | None = None


class UnknownTaskError(ValueError):
    """A ``task`` no installed domain declares."""


@functools.lru_cache(maxsize=None)
def domains() -> tuple[Domain, ...]:
    """Every installed domain, in entry-point name order (loaded once per process)."""
    found = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        domain = ep.load()
        if not isinstance(domain, Domain):
            raise TypeError(f"entry point {ep.name} = {ep.value} ({ENTRY_POINT_GROUP}) is not a bio_speech_dyt Domain")
        found.append(domain)
    return tuple(found)


def all_tasks() -> dict[str, Task]:
    tasks: dict[str, Task] = {}
    for d in domains():
        for t in d.tasks:
            if t.name in tasks:
                raise ValueError(f"task {t.name!r} is declared by two domains ({tasks[t.name].domain}, {d.name})")
            tasks[t.name] = t
    return tasks


def get_task(name: Any, where: str = "config") -> Task:
    tasks = all_tasks()
    if name not in tasks:
        known = ", ".join(sorted(tasks)) or "none: no domain is installed (pip install -e .)"
        raise UnknownTaskError(f"{where}: 'task' must be one of {known}; got {name!r}")
    return tasks[name]
