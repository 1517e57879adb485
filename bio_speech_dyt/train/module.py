"""The LightningModule both domains subclass.

Subclasses build ``self.model`` and implement :meth:`compute_loss`; this base class does
optimizer groups, schedules, logging of every loss part, throughput counting and the
non-finite-loss guard.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from bio_speech_dyt.config import OptimConfig
from bio_speech_dyt.train.optim import build_optimizer, build_scheduler


class NonFiniteLossError(RuntimeError):
    """Raised when the training loss is NaN/inf and the policy is ``stop``."""


class BaseModule(L.LightningModule):
    #: name of the throughput metric ("tokens_per_s" for DNA, "samples_per_s" for speech)
    throughput_key = "items_per_s"

    def __init__(
        self,
        model: nn.Module,
        optim: OptimConfig,
        total_steps: int,
        nonfinite_loss: str = "stop",
        config: dict | None = None,
    ):
        """``config``: the job's resolved config as plain data (``to_dict(cfg)``); stored in
        every checkpoint's ``hyper_parameters["config"]`` so a checkpoint can be rebuilt
        (``bio_speech_dyt.jobs.load_checkpoint_model``)."""
        super().__init__()
        self.save_hyperparameters({"config": config or {}})
        if nonfinite_loss not in ("stop", "skip"):
            raise ValueError(f"nonfinite_loss must be 'stop' or 'skip', got {nonfinite_loss!r}")
        self.model = model
        self.optim_cfg = optim
        self.total_steps = total_steps
        self.nonfinite_loss = nonfinite_loss
        self.last_train_logs: dict[str, float] = {}  # of the last optimizer step
        self.last_items = 0
        self.skipped_steps = 0
        self._micro: list[tuple[dict[str, float], int]] = []  # micro-batches of the step under way

    # -- to implement -----------------------------------------------------------------
    def compute_loss(self, batch: Any, stage: str) -> tuple[Tensor, dict[str, Tensor | float], int]:
        """Return ``(loss, parts, num_items)``: the loss to minimise, extra scalars to log
        (without prefix) and the number of items (tokens / samples) in the batch."""
        raise NotImplementedError

    # -- Lightning hooks --------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int):
        loss, parts, items = self.compute_loss(batch, "train")
        logs = {"train_loss": loss.detach(), **{f"train_{k}": v for k, v in parts.items()}}
        # logged and counted is the global batch: with DDP the losses are the mean over ranks (the loss
        # whose gradient DDP applies; every rank agrees on a non-finite one), the items their sum
        logs = self._mean_over_ranks({**logs, "items": items})
        self.last_items = round(logs.pop("items") * self.trainer.world_size)
        if not math.isfinite(logs["train_loss"]):
            step = self.trainer.global_step
            if self.nonfinite_loss == "stop":
                ckpt_dir = Path(self.trainer.default_root_dir) / "checkpoints"
                where = (f"the last good checkpoint is {ckpt_dir / 'last.ckpt'} (resume with --resume)"
                         if (ckpt_dir / "last.ckpt").is_file() else
                         "no checkpoint was written yet: lower optim.lr or check model.alpha_init and the data")
                raise NonFiniteLossError(
                    f"non-finite training loss ({logs['train_loss']}) at step {step}; stopping: {where}; "
                    f"or set trainer.nonfinite_loss=skip to skip such updates."
                )
            self.skipped_steps += 1
            self.print(f"warning: non-finite loss at step {step}; update skipped ({self.skipped_steps} so far)")
            return None
        self._micro.append((logs, self.last_items))
        self.log("loss", logs["train_loss"], prog_bar=True, on_step=True, on_epoch=False, logger=False)
        return loss

    def close_step(self) -> tuple[dict[str, float], int]:
        """Called once per optimizer step (by :class:`RunFiles`): the step's logs, the
        item-weighted mean over its micro-batches (with a plain mean loss over samples, that is
        the loss of the whole accumulated batch), and its items."""
        micro, self._micro = self._micro, []
        items = sum(n for _, n in micro)
        if not micro:
            return {}, 0
        weights = [n / items if items else 1 / len(micro) for _, n in micro]
        keys = list(dict.fromkeys(k for logs, _ in micro for k in logs))
        self.last_train_logs = {k: sum(w * logs.get(k, 0.0) for (logs, _), w in zip(micro, weights)) for k in keys}
        self.last_items = items
        return self.last_train_logs, items

    def _mean_over_ranks(self, logs: dict[str, Tensor | float]) -> dict[str, float]:
        """Scalars averaged over the DDP ranks in one all-reduce (float64: one process's values
        come back exactly); unchanged on a single process."""
        values = torch.tensor([float(v) for v in logs.values()], dtype=torch.float64)
        if self.trainer.world_size > 1:
            values = self.trainer.strategy.reduce(values.to(self.device), reduce_op="mean").cpu()
        return dict(zip(logs, values.tolist()))

    def validation_step(self, batch: Any, batch_idx: int):
        loss, parts, items = self.compute_loss(batch, "valid")
        logs = {"valid_loss": loss.detach()}
        logs.update({f"valid_{k}": v for k, v in parts.items()})
        self.log_dict(logs, on_step=False, on_epoch=True, sync_dist=True, batch_size=max(1, items))
        return loss

    def configure_optimizers(self):
        # submodules declare model-specific no-decay parameters through no_weight_decay()
        opt = build_optimizer(self, self.optim_cfg)
        sched = build_scheduler(opt, self.optim_cfg, self.total_steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

