"""The genomics domain as the core sees it (entry point ``bio_speech_dyt.tasks: genomics``):
its tasks, its ``bsd prepare`` / ``bsd evaluate`` verbs, its part of the synthetic data and of
the demo. Heavy modules are imported inside the functions so that ``bsd --help`` stays fast.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from bio_speech_dyt.tasks import DemoStep, Domain, Task, Verb
from genomics.jobs import gb_eval, pretrain
from genomics.jobs.specs import SPECS

GB_HELP = "GenomicBenchmarks task"
PRETRAIN_REPORTS = ("valid_loss", "train_loss", "baseline_unigram_loss", "baseline_kmer_loss", "tokens_per_s")
GB_REPORTS = ("test_accuracy", "test_accuracy_std", "per_seed")


def _restore(ckpt_path: Path):
    from bio_speech_dyt.checkpoints import checkpoint_config
    from bio_speech_dyt.config import load_config

    raw = checkpoint_config(ckpt_path)
    cfg = load_config(pretrain.CONFIGS[raw["task"]], data=raw)
    return cfg, pretrain.restore(ckpt_path, cfg)


def _tasks() -> list[Task]:
    tasks = []
    for name in SPECS:
        tasks.append(Task(f"{name}_pretrain", "genomics", "pretrain", pretrain.CONFIGS[f"{name}_pretrain"], pretrain.run,
                          loss_unit="nats/token", reports=PRETRAIN_REPORTS, restore=_restore,
                          analysis_inputs=pretrain.analysis_inputs))
        tasks.append(Task(f"{name}_gb", "genomics", "evaluate", gb_eval.CONFIGS[f"{name}_gb"], gb_eval.run,
                          loss_unit="nats/sequence", reports=GB_REPORTS, analysis_inputs=gb_eval.analysis_inputs))
    return tasks


# -- bsd prepare -------------------------------------------------------------------------------
def _hg38_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--fasta", type=Path, help="plain, gzip or bgzip FASTA")
    src.add_argument("--download", action="store_true", help="fetch hg38.ml.fa.gz and sequences_human.bed")
    p.add_argument("--bed", type=Path, help="interval split (chr, start, end, split); default: a seeded split")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated split when no --bed is given")
    p.add_argument("--out", type=Path, default=Path("data/hg38"))


def _hg38(a: argparse.Namespace) -> None:
    from genomics.data.hg38 import prepare_hg38

    prepare_hg38(fasta=a.fasta, bed=a.bed, download=a.download, out=a.out, seed=a.seed)


def _gb_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="task name, e.g. human_nontata_promoters")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--source", type=Path, help="package folder layout, CSV/TSV(.gz) file or train/test pair, or interval folder")
    src.add_argument("--download", action="store_true", help="through the genomic-benchmarks package")
    p.add_argument("--fasta", type=Path, help="genome to slice an interval folder from")
    p.add_argument("--holdout-fraction", type=float, help="make a stratified train/test split from a test-only source")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="default: data/genomic-benchmarks/NAME")


def _gb(a: argparse.Namespace) -> None:
    from genomics.data.gb import prepare_genomic_benchmarks

    prepare_genomic_benchmarks(dataset=a.dataset, source=a.source, fasta=a.fasta, download=a.download,
                               holdout_fraction=a.holdout_fraction, seed=a.seed,
                               out=a.out or Path("data/genomic-benchmarks") / a.dataset)


# -- bsd evaluate genomic-benchmarks ------------------------------------------------------------
def _eval_gb_args(p: argparse.ArgumentParser) -> None:
    from bio_speech_dyt.cli import add_job_arguments, seeds_arg

    p.add_argument("config", type=Path)
    p.add_argument("--data", type=Path, nargs="+", required=True, help="prepared task folder(s)")
    p.add_argument("--checkpoint", type=Path, help="pretraining checkpoint (default: from scratch)")
    p.add_argument("--seeds", type=seeds_arg, default=None, help="e.g. 1,2,3")
    add_job_arguments(p)


def evaluate_gb(config: Path, data, checkpoint=None, seeds=None, overrides=(), out=None, resume=False) -> dict | None:
    """``bsd evaluate genomic-benchmarks`` as a function (the demo and tests call it)."""
    from bio_speech_dyt.jobs import execute, resolve

    task, cfg = resolve(config, overrides, kind="evaluate")
    cfg = gb_eval.configure(cfg, data, checkpoint, seeds)
    return execute(task, cfg, Path(out) if out else Path("runs") / Path(config).stem, resume)


def _eval_gb(a: argparse.Namespace):
    return evaluate_gb(a.config, a.data, a.checkpoint, a.seeds, a.overrides, a.out, a.resume)


# -- synthetic data and demo --------------------------------------------------------------------
def _synthetic(out: Path, seed: int) -> list[Path]:
    from genomics.data.synthetic import prepare_synthetic_genomics

    prepare_synthetic_genomics(out, seed=seed)
    return [out / "genome", out / "gb"]


def _demo_gb(norm: str, checkpoint: Path, out: Path, resume: bool):
    return evaluate_gb(Path("configs/genomics/cpu") / f"hyenadna_tiny_gb_{norm}.yaml", [Path("data/synthetic/gb")],
                       checkpoint=checkpoint, out=out, resume=resume)


DOMAIN = Domain(
    name="genomics",
    tasks=_tasks(),
    prepare=(Verb("hg38", "reference genome + interval split for pretraining", _hg38_args, _hg38),
             Verb("genomic-benchmarks", GB_HELP + " for evaluation", _gb_args, _gb)),
    evaluate=(Verb("genomic-benchmarks", "fine-tune and test on " + GB_HELP + "s", _eval_gb_args, _eval_gb),),
    make_synthetic=_synthetic,
    demo=(DemoStep("hyenadna", "HyenaDNA", "configs/genomics/cpu/hyenadna_tiny_pretrain_{norm}.yaml",
                   "GenomicBenchmarks fine-tuning", "gb", _demo_gb),),
    importer=lambda: __import__("genomics.pretrained", fromlist=["detect"]),
)
