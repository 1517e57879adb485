"""The run-directory callback: metrics.csv, alpha.csv, throughput, RNG states in checkpoints
and the step-indexed sampler's position on resume."""
from __future__ import annotations

import csv
import io
import random
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch

from bio_speech_dyt.dyt import DyT
from bio_speech_dyt.io import write_text
from bio_speech_dyt.train.sampling import StepBatchSampler


def rng_states() -> dict:
    """Python, NumPy, torch (and CUDA) RNG states as weights_only-loadable data."""
    np_state = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    random.setstate(_tuplify(states["python"]))
    n = states["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _tuplify(x):
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x


class _CsvTable:
    """Rows kept in memory and rewritten atomically; on resume rows after the restored step
    are dropped so that a resumed run's file matches an uninterrupted one."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict] = []

    def load(self, max_step: int) -> None:
        if self.path.is_file():
            with self.path.open(newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["step"]) <= max_step]

    def flush(self) -> None:
        if not self.rows:
            return
        fields: list[str] = []
        for r in self.rows:
            fields += [k for k in r if k not in fields]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=fields)
        w.writeheader()
        w.writerows(self.rows)
        write_text(self.path, buf.getvalue())


class RunFiles(L.Callback):
    """Writes ``metrics.csv`` (one row per logged optimizer step — micro-batches of an accumulated
    step are one row — and validation rows), ``alpha.csv`` (every DyT alpha, every optimizer
    step), forwards both to the Lightning loggers, and measures throughput (items/s, first step
    excluded: it carries compilation and warm-up)."""

    def __init__(self, run_dir: Path, log_every_n_steps: int = 1):
        self.metrics = _CsvTable(run_dir / "metrics.csv")
        self.alphas = _CsvTable(run_dir / "alpha.csv")
        self.log_every = max(1, log_every_n_steps)
        self._t_last: float | None = None
        self.items = 0
        self.seconds = 0.0
        self._dyt: list[tuple[str, DyT]] = []
        self._pending_rng: dict | None = None
        self._last_step = -1

    # -- lifecycle ----------------------------------------------------------------
    def on_train_start(self, trainer, pl_module):  # after a resumed checkpoint is restored
        self._dyt = [(n.removeprefix("model."), m) for n, m in pl_module.named_modules() if isinstance(m, DyT)]
        step = trainer.global_step
        self._last_step = step
        self.metrics.load(step)
        self.alphas.load(step)
        sampler = getattr(trainer.train_dataloader, "batch_sampler", None)
        if isinstance(sampler, StepBatchSampler):  # continue the data order exactly where it stopped
            sampler.set_distributed(trainer.world_size, trainer.global_rank)
            sampler.start_step = step * trainer.accumulate_grad_batches  # batches, not optimizer steps

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self._pending_rng is not None:
            set_rng_states(self._pending_rng)
            self._pending_rng = None
        if self._t_last is None:
            self._t_last = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if step == self._last_step:  # a micro-batch inside an accumulated step: no row yet
            return
        self._last_step = step
        logs, items = pl_module.close_step()
        now = time.perf_counter()
        if step > 1 and self._t_last is not None:  # skip the first (warm-up) step
            self.items += items
            self.seconds += now - self._t_last
        self._t_last = now
        if self._dyt and trainer.is_global_zero:
            row = {"step": step}
            row.update({name: float(m.alpha.detach().float().reshape(-1)[0]) for name, m in self._dyt})
            self.alphas.rows.append(row)
            self._to_loggers(trainer, {f"alpha/{k}": v for k, v in row.items() if k != "step"}, step)
        if logs and (step % self.log_every == 0 or step == 1):
            row = {"step": step, "epoch": trainer.current_epoch}
            row.update(logs)
            opt = trainer.optimizers[0] if trainer.optimizers else None
            if opt is not None:
                row["lr"] = opt.param_groups[0]["lr"]
            if self.seconds > 0:
                row[pl_module.throughput_key] = self.items / self.seconds
            self.metrics.rows.append(row)
            self._to_loggers(trainer, {k: v for k, v in row.items() if k not in ("step", "epoch")}, step)

    @staticmethod
    def _to_loggers(trainer, values: dict, step: int) -> None:
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(values, step)

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        vals = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("valid_") and torch.is_tensor(v)}
        if vals:
            self.metrics.rows.append({"step": trainer.global_step, "epoch": trainer.current_epoch, **vals})
            self._to_loggers(trainer, vals, trainer.global_step)
        self._flush(trainer)
        self._t_last = None  # validation time is not training time

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        checkpoint["rng_states"] = rng_states()
        self._flush(trainer)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint):
        # applied at the first batch: creating the DataLoader iterator draws from the torch RNG
        self._pending_rng = checkpoint.get("rng_states")

    def on_train_end(self, trainer, pl_module):
        self._flush(trainer)

    def on_exception(self, trainer, pl_module, exception):
        self._flush(trainer)

    def _flush(self, trainer) -> None:
        if trainer.is_global_zero:
            self.metrics.flush()
            self.alphas.flush()

    @property
    def throughput(self) -> float | None:
        return self.items / self.seconds if self.seconds > 0 else None
