"""One way to start every job: the run directory, its lock and config, the seed, the step plan.

``start_run`` is the front door of ``bsd pretrain`` and of every evaluation:

1. the config is fully validated before anything is written (typed configs);
2. the run directory is locked (``.bsd.lock``, a dotfile) for the whole job, so a second job
   into the same ``--out`` fails at once instead of interleaving checkpoints;
3. an existing run is refused unless ``--resume``; a resumed run must have the same config but
   for ``trainer.max_steps`` (anything else would silently continue a different experiment),
   and its ``last.ckpt`` must be readable and come from that config — only then is
   ``config.yaml`` rewritten; resuming a finished run is a no-op that says so;
4. the seed is set once, before the task builds its model;
5. :class:`StepPlan` turns the trainer settings into optimizer steps, micro-batches and
   validation intervals in one place, honouring gradient accumulation, devices and nodes.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import yaml

from bio_speech_dyt.checkpoints import checkpoint_config
from bio_speech_dyt.config import ConfigError, JobConfig, TrainerConfig, to_dict
from bio_speech_dyt.io import write_text
from bio_speech_dyt.locks import LockedError, exclusive_lock
from bio_speech_dyt.tasks import Task

CONFIG = "config.yaml"
METRICS = "metrics.json"
CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"
#: keys a resumed run may change (more steps continue the same experiment)
RESUMABLE_CHANGES = frozenset({"trainer.max_steps"})


class RunStateError(ValueError):
    """A run directory that cannot be used as asked (exists, differs, finished, locked)."""


@dataclasses.dataclass(frozen=True)
class StepPlan:
    """Step arithmetic of one fit.

    ``optimizer_steps``: the schedule length; ``micro_batches``: batches the training sampler
    must yield per process (``optimizer_steps × accumulate``); ``world_size``: processes that
    share one global batch; ``val_every_batches``: Lightning's ``val_check_interval``, which
    counts micro-batches, for a ``trainer.val_check_interval`` given in optimizer steps."""

    optimizer_steps: int
    accumulate: int
    world_size: int
    step_bounded: bool
    val_every_batches: int | None

    @property
    def micro_batches(self) -> int:
        return self.optimizer_steps * self.accumulate

    @classmethod
    def of(cls, t: TrainerConfig, batches_per_epoch: int | None = None) -> "StepPlan":
        """For step-bounded training (``max_steps > 0``) the batches per epoch are not needed;
        for epoch-bounded training pass the per-process batches of one epoch."""
        devices = t.devices if isinstance(t.devices, int) else 1
        world = max(1, devices) * t.num_nodes
        accumulate = t.accumulate_grad_batches
        if t.max_steps > 0:
            steps, bounded = t.max_steps, True
        else:
            if batches_per_epoch is None:
                raise ValueError("an epoch-bounded plan needs the batches per epoch")
            # Lightning steps the optimizer on the last, incomplete accumulation of an epoch too
            steps, bounded = math.ceil(batches_per_epoch / accumulate) * (t.max_epochs or 1), False
        val = t.val_check_interval * accumulate if t.val_check_interval is not None else None
        return cls(max(1, steps), accumulate, world, bounded, val)


@dataclasses.dataclass
class RunDir:
    """A started run directory (locked while the job runs)."""

    path: Path
    task: Task
    resume: bool

    @property
    def last_checkpoint(self) -> Path | None:
        p = self.path / CHECKPOINTS / LAST
        return p if p.is_file() else None

    def file(self, name: str) -> Path:
        return self.path / name


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict) and d:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def config_differences(old: dict, new: dict, allowed: frozenset[str] = RESUMABLE_CHANGES) -> list[str]:
    """``key: old -> new`` for every resolved key that differs, except ``allowed`` ones."""
    a, b = _flatten(to_dict(old)), _flatten(to_dict(new))  # tuples and lists alike
    return [f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}"
            for k in sorted(set(a) | set(b)) if k not in allowed and a.get(k) != b.get(k)]


def _read_run_config(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise RunStateError(f"{path}: unreadable run config ({e}); this run directory cannot be resumed") from None
    if not isinstance(data, dict):
        raise RunStateError(f"{path}: not a run config (a mapping); this run directory cannot be resumed")
    return data


def _finished_steps(run_dir: Path) -> int | None:
    """The step count of a finished run (its ``metrics.json``), else None."""
    p = run_dir / METRICS
    if not p.is_file():
        return None
    try:
        return int(json.loads(p.read_text()).get("steps", -1))
    except (ValueError, OSError, AttributeError):
        return -1


def check_machine(t: TrainerConfig) -> None:
    """Settings this machine cannot honour, refused before anything is written."""
    import torch

    if t.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={t.accelerator}: this machine has no CUDA GPU; "
                          "use trainer.accelerator=cpu or auto")
    if t.accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.accelerator=mps: MPS is not available on this machine; use cpu or auto")


class RunContext:
    """``with RunContext(task, cfg, out, resume) as run:`` — lock, check, write config, seed.

    ``run`` is None when there is nothing to do (a finished run resumed with the same config).
    """

    def __init__(self, task: Task, cfg: JobConfig, out: Path, resume: bool, primary: bool = True):
        """``primary``: this is the global-rank-0 process. The other processes of a DDP job
        (started by Lightning with the same command line) only seed: rank 0 owns the run
        directory and has checked it."""
        self.task, self.cfg, self.out, self.resume, self.primary = task, cfg, Path(out), resume, primary
        self._lock = None
        self._created_dir = False
        self._before: set[str] | None = None  # entries of a fresh run's folder before it started

    def __enter__(self) -> RunDir | None:
        out = self.out
        check_machine(self.cfg.trainer)
        if not self.primary:
            import lightning as L

            L.seed_everything(self.cfg.seed, workers=True, verbose=False)
            return RunDir(out, self.task, self.resume)
        if out.exists() and not out.is_dir():
            raise RunStateError(f"--out {out} is a file, not a run directory; choose another --out")
        self._created_dir = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        try:
            self._lock = exclusive_lock(out, f"{out}: this run directory is in use by another bsd process (pid {{pid}}); "
                                                 "wait for it to finish or choose another --out")
            self._lock.__enter__()
        except LockedError as e:
            raise RunStateError(str(e)) from None
        try:
            run = self._check()
            if run is not None and not (out / CONFIG).is_file():
                self._before = {p.name for p in out.iterdir()}
            if run is not None:
                write_text(out / CONFIG, yaml.safe_dump(to_dict(self.cfg), sort_keys=False))
                import lightning as L

                L.seed_everything(self.cfg.seed, workers=True, verbose=False)  # once, before the model is built
            return run
        except BaseException as e:
            self.__exit__(type(e), e, None)
            raise

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and self._before is not None and not self._made_results():
            self._undo_fresh_run()
        if self._lock is not None:
            self._lock.__exit__(exc_type, exc, tb)
            self._lock = None

    def _made_results(self) -> bool:
        """Whether the run wrote anything worth keeping: a checkpoint or a finished part's result
        (an evaluation's ``TASK/seedN/result.json``) anywhere below it."""
        return any(self.out.rglob("*.ckpt")) or any(self.out.rglob("result.json"))

    def _undo_fresh_run(self) -> None:
        """A new run that failed before it wrote a checkpoint or a result leaves nothing behind (the
        folder is as it was, so the same command can be run again once the cause is fixed)."""
        import shutil

        from bio_speech_dyt.locks import LOCK_NAME

        for p in self.out.iterdir():
            if p.name not in self._before and p.name != LOCK_NAME:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        if self._created_dir:
            self._lock.__exit__(None, None, None)
            self._lock = None
            with contextlib.suppress(OSError):
                self.out.rmdir()

    def _check(self) -> RunDir | None:
        out, new = self.out, to_dict(self.cfg)
        existing = out / CONFIG
        run = RunDir(out, self.task, self.resume)
        if not existing.is_file():
            leftovers = [p.name for p in out.iterdir() if not p.name.startswith(".")]
            if leftovers:
                raise RunStateError(f"--out {out} is not empty and holds no run ({', '.join(sorted(leftovers)[:5])}); "
                                    "choose an empty or new folder")
            if self.resume:
                print(f"--resume: {out} holds no run yet; starting it")
            return run
        if not self.resume:
            raise RunStateError(f"{out} already holds a run ({CONFIG}); pass --resume to continue it or choose a new --out")
        diffs = config_differences(_read_run_config(existing), new)
        if diffs:
            raise RunStateError(f"--resume: the config differs from the run in {out} ({'; '.join(diffs)}); "
                                f"only trainer.max_steps may change; use a new --out for a different experiment")
        ckpt = run.last_checkpoint
        if ckpt is not None:
            saved = checkpoint_config(ckpt)
            diffs = config_differences(saved, new)
            if diffs:
                raise RunStateError(f"{ckpt}: saved by a different config ({'; '.join(diffs)}); cannot resume this run")
        finished = _finished_steps(out)
        if finished is not None:
            wanted = self.cfg.trainer.max_steps
            if wanted <= 0 or finished >= wanted:
                print(f"--resume: {out} is finished ({finished} steps, {METRICS}); nothing to do "
                      "(raise trainer.max_steps to train further)")
                return None
        return run


def start_message(run: RunDir) -> str:
    state = "resuming from " + str(run.last_checkpoint) if run.resume and run.last_checkpoint else "new run"
    return f"{run.task.name}: {state} in {run.path}"
