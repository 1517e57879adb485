"""Shared Lightning harness: base module, optimizer groups, schedules, run-directory callbacks."""
from bio_speech_dyt.train.module import BaseModule, NonFiniteLossError
from bio_speech_dyt.train.optim import build_optimizer, build_scheduler, lr_lambda, no_decay_names, param_groups
from bio_speech_dyt.train.sampling import PassIndexed, StepBatchSampler
from bio_speech_dyt.train.runner import build_trainer, last_checkpoint, run_training

__all__ = [
    "BaseModule",
    "NonFiniteLossError",
    "build_optimizer",
    "build_scheduler",
    "lr_lambda",
    "no_decay_names",
    "param_groups",
    "build_trainer",
    "last_checkpoint",
    "run_training",
    "StepBatchSampler",
    "PassIndexed",
]
