"""The speech domain as the core sees it (entry point ``bio_speech_dyt.tasks: speech``): the
wav2vec 2.0 pretraining and evaluation tasks, ``bsd prepare librispeech``,
``bsd evaluate speech``, its part of the synthetic data and of the demo. fairseq2 is imported
only when a speech job runs."""
from __future__ import annotations

import argparse
from pathlib import Path

from bio_speech_dyt.tasks import DemoStep, Domain, Task, Verb

PRETRAIN_REPORTS = ("valid_loss_bits", "contrastive_bits", "contrastive_accuracy", "num_distractors", "samples_per_s")


def _lazy(module: str, attr: str):
    """A function of a speech job module, imported on first call (fairseq2 is slow to import)."""
    def call(*args, **kwargs):
        import importlib

        return getattr(importlib.import_module(module), attr)(*args, **kwargs)

    call.__name__ = attr
    return call


def _pretrain_config():
    from speech.jobs.pretrain import Wav2Vec2PretrainConfig

    return Wav2Vec2PretrainConfig


def _eval_config():
    from speech.jobs.evaluate import SpeechEvalConfig

    return SpeechEvalConfig


def _restore(ckpt_path: Path):
    from speech.jobs.pretrain import restore

    return restore(ckpt_path)


def _tasks() -> list[Task]:
    return [
        Task("wav2vec2_pretrain", "speech", "pretrain", _pretrain_config, _lazy("speech.jobs.pretrain", "run"),
             loss_unit="bits", reports=PRETRAIN_REPORTS, restore=_restore,
             analysis_inputs=_lazy("speech.jobs.pretrain", "analysis_inputs")),
        Task("wav2vec2_eval", "speech", "evaluate", _eval_config, _lazy("speech.jobs.evaluate", "run"),
             loss_unit="bits", reports=("valid_loss_bits", "contrastive_accuracy")),
    ]


def _librispeech_args(p: argparse.ArgumentParser) -> None:
    from bio_speech_dyt.cli import list_arg

    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--root", type=Path, help="PATH/LibriSpeech with subset folders")
    src.add_argument("--download", action="store_true", help="fetch the OpenSLR archives")
    p.add_argument("--train-subsets", type=list_arg)
    p.add_argument("--valid-subsets", type=list_arg)
    p.add_argument("--valid-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resample", action="store_true", help="resample other rates to 16 kHz")
    p.add_argument("--downmix", action="store_true", help="average stereo to mono")
    p.add_argument("--out", type=Path, default=Path("data/librispeech"))


def _librispeech(a: argparse.Namespace) -> None:
    from speech.data.prepare import prepare_librispeech

    prepare_librispeech(root=a.root, download=a.download, train_subsets=a.train_subsets,
                        valid_subsets=a.valid_subsets, valid_fraction=a.valid_fraction, seed=a.seed,
                        resample=a.resample, downmix=a.downmix, out=a.out)


def _eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--out", type=Path, help="run directory (default: RUN_DIR/eval beside the checkpoint)")
    p.add_argument("--resume", action="store_true", help="a finished evaluation is kept (no-op)")


def evaluate_speech(checkpoint: Path, manifest: Path, out: Path | None = None, resume: bool = False) -> dict | None:
    """``bsd evaluate speech`` as a function (the demo and tests call it)."""
    from bio_speech_dyt.jobs import execute
    from bio_speech_dyt.tasks import get_task
    from speech.jobs.evaluate import configure, default_out

    cfg = configure(checkpoint, manifest)
    return execute(get_task("wav2vec2_eval"), cfg, Path(out) if out else default_out(checkpoint), resume)


def _eval(a: argparse.Namespace):
    return evaluate_speech(a.checkpoint, a.manifest, a.out, a.resume)


def _synthetic(out: Path, seed: int) -> list[Path]:
    from speech.data.synthetic import make_synthetic_speech

    make_synthetic_speech(out / "speech", seed=seed)
    return [out / "speech"]


def _demo_eval(norm: str, checkpoint: Path, out: Path, resume: bool):
    return evaluate_speech(checkpoint, Path("data/synthetic/speech/valid.tsv"), out, resume)


DOMAIN = Domain(
    name="speech",
    tasks=_tasks(),
    prepare=(Verb("librispeech", "LibriSpeech manifests for wav2vec 2.0", _librispeech_args, _librispeech),),
    evaluate=(Verb("speech", "wav2vec 2.0 validation loss in bits per masked frame", _eval_args, _eval),),
    make_synthetic=_synthetic,
    demo=(DemoStep("wav2vec2", "wav2vec 2.0", "configs/speech/cpu/wav2vec2_tiny_{norm}.yaml",
                   "wav2vec 2.0 validation", "eval", _demo_eval),),
    importer=lambda: __import__("speech.pretrained", fromlist=["detect"]),
)
