"""``bsd`` — the front door: prepare / pretrain / evaluate / import / export / report / bench / demo.

Every verb imports its domain lazily so that ``bsd --help`` is instant and a missing
optional dependency only affects the verb that needs it.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from bio_speech_dyt.config import ConfigError

GB_HELP = "GenomicBenchmarks task"


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds expects comma-separated integers, got {text!r}") from None


def _subsets(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bsd",
        description="bio-speech-dyt: DyT (Dynamic Tanh) for wav2vec 2.0 speech and HyenaDNA/Caduceus genomics pretraining.",
    )
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    # prepare ---------------------------------------------------------------------------
    prep = verbs.add_parser("prepare", help="prepare a dataset (hg38, genomic-benchmarks, librispeech, synthetic)")
    kinds = prep.add_subparsers(dest="dataset_kind", required=True, metavar="DATASET")

    hg = kinds.add_parser("hg38", help="reference genome + interval split for pretraining")
    src = hg.add_mutually_exclusive_group(required=True)
    src.add_argument("--fasta", type=Path, help="plain, gzip or bgzip FASTA")
    src.add_argument("--download", action="store_true", help="fetch hg38.ml.fa.gz and sequences_human.bed")
    hg.add_argument("--bed", type=Path, help="interval split (chr, start, end, split); default: a seeded split")
    hg.add_argument("--seed", type=int, default=0, help="seed of the generated split when no --bed is given")
    hg.add_argument("--out", type=Path, default=Path("data/hg38"))

    gb = kinds.add_parser("genomic-benchmarks", help=GB_HELP + " for evaluation")
    gb.add_argument("--dataset", required=True, help="task name, e.g. human_nontata_promoters")
    src = gb.add_mutually_exclusive_group(required=True)
    src.add_argument("--source", type=Path, help="package folder layout, CSV/TSV(.gz) file or train/test pair, or interval folder")
    src.add_argument("--download", action="store_true", help="through the genomic-benchmarks package")
    gb.add_argument("--fasta", type=Path, help="genome to slice an interval folder from")
    gb.add_argument("--holdout-fraction", type=float, help="make a stratified train/test split from a test-only source")
    gb.add_argument("--seed", type=int, default=0)
    gb.add_argument("--out", type=Path, help="default: data/genomic-benchmarks/NAME")

    ls = kinds.add_parser("librispeech", help="LibriSpeech manifests for wav2vec 2.0")
    src = ls.add_mutually_exclusive_group(required=True)
    src.add_argument("--root", type=Path, help="PATH/LibriSpeech with subset folders")
    src.add_argument("--download", action="store_true", help="fetch the OpenSLR archives")
    ls.add_argument("--train-subsets", type=_subsets)
    ls.add_argument("--valid-subsets", type=_subsets)
    ls.add_argument("--valid-fraction", type=float, default=0.1)
    ls.add_argument("--seed", type=int, default=0)
    ls.add_argument("--resample", action="store_true", help="resample other rates to 16 kHz")
    ls.add_argument("--downmix", action="store_true", help="average stereo to mono")
    ls.add_argument("--out", type=Path, default=Path("data/librispeech"))

    syn = kinds.add_parser("synthetic", help="the embedded default data, made locally (no network)")
    syn.add_argument("--out", type=Path, default=Path("data/synthetic"))
    syn.add_argument("--seed", type=int, default=0)

    # pretrain --------------------------------------------------------------------------
    pt = verbs.add_parser("pretrain", help="pretrain a model from a YAML config")
    pt.add_argument("config", type=Path)
    pt.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    pt.add_argument("--out", type=Path, help="run directory (default runs/CONFIG_STEM)")
    pt.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/last.ckpt")

    # evaluate --------------------------------------------------------------------------
    ev = verbs.add_parser("evaluate", help="evaluate: genomic-benchmarks fine-tuning or speech validation loss")
    evk = ev.add_subparsers(dest="eval_kind", required=True, metavar="KIND")
    egb = evk.add_parser("genomic-benchmarks", help="fine-tune and test on " + GB_HELP + "s")
    egb.add_argument("config", type=Path)
    egb.add_argument("--data", type=Path, nargs="+", required=True, help="prepared task folder(s)")
    egb.add_argument("--checkpoint", type=Path, help="pretraining checkpoint (default: from scratch)")
    egb.add_argument("--seeds", type=_seeds, default=None, help="e.g. 1,2,3")
    egb.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    egb.add_argument("--out", type=Path)
    esp = evk.add_parser("speech", help="wav2vec 2.0 validation loss in bits per masked frame")
    esp.add_argument("--checkpoint", type=Path, required=True)
    esp.add_argument("--manifest", type=Path, required=True)
    esp.add_argument("--out", type=Path)

    # import / export --------------------------------------------------------------------
    im = verbs.add_parser("import", help="a published checkpoint (HyenaDNA, Caduceus, wav2vec 2.0) as a run directory")
    im.add_argument("src", help="checkpoint folder or file, hf:REPO_ID or fairseq2:CARD")
    im.add_argument("--out", type=Path, required=True, help="the run directory to create (must not exist or be empty)")
    im.add_argument("--norm", choices=["dyt"], help="convert every LayerNorm/RMSNorm to DyT")
    im.add_argument("--alpha-init", default="0.5", help="alpha0 of the DyTs, or 'fit' (with --calibrate)")
    im.add_argument("--calibrate", type=Path, metavar="DATA_DIR",
                    help="prepared genome or GB task, or LibriSpeech manifests: the batch --alpha-init fit measures")
    im.add_argument("--trust-pickle", action="store_true",
                    help="load a checkpoint that needs arbitrary unpickling (can run code: trusted sources only)")
    ex = verbs.add_parser("export", help="a LayerNorm/RMSNorm HyenaDNA or Caduceus run in a Hub layout")
    ex.add_argument("run_dir", type=Path)
    ex.add_argument("--format", default="hf", help="hf (the layout the run came from) or a layout name")
    ex.add_argument("--out", type=Path, required=True)

    # report / bench / demo -------------------------------------------------------------
    rp = verbs.add_parser("report", help="LN-vs-DyT tables and plots from run directories")
    rp.add_argument("runs", type=Path, nargs="*")
    rp.add_argument("--out", type=Path, required=True)
    rp.add_argument("--analyze", type=Path, action="append", default=[], metavar="CKPT",
                    help="plot norm input/output curves of a checkpoint (the paper's analysis)")

    bn = verbs.add_parser("bench", help="benchmarks (print a table, write JSON)")
    bn.add_argument("what", choices=["kernel", "models", "data"])
    bn.add_argument("--full", action="store_true", help="the full grid (default: ≤ 3 min on 2 cores)")
    bn.add_argument("--out", type=Path, default=Path("benchmarks/results"))

    dm = verbs.add_parser("demo", help="everything above on the embedded default data, small")
    dm.add_argument("--out", type=Path, default=Path("runs/demo"))
    return p


def prepare_synthetic(out: Path, seed: int = 0) -> None:
    """The embedded default data: ``out/genome``, ``out/gb`` and ``out/speech``."""
    from genomics.data.synthetic import prepare_synthetic_genomics
    from speech.data.synthetic import make_synthetic_speech

    prepare_synthetic_genomics(out, seed=seed)
    make_synthetic_speech(out / "speech", seed=seed)


def _run_benchmark(what: str, full: bool, out: Path) -> None:
    """Benchmarks live in the source tree's benchmarks/ folder (not an installed package)."""
    root = Path(__file__).resolve().parents[1]
    script = root / "benchmarks" / f"bench_{what}.py"
    if not script.is_file():
        raise SystemExit(f"bsd bench {what}: {script} not found (bsd bench needs a source checkout)")
    spec = importlib.util.spec_from_file_location(f"bench_{what}", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(full=full, out=out)


def pretrained_domain(src: str):
    """The domain importer that recognises ``src``: genomics, then speech (each has ``detect``,
    ``import_checkpoint``; genomics also ``export_run``)."""
    from bio_speech_dyt.pretrained import CheckpointError

    for name in ("genomics.pretrained", "speech.pretrained"):
        domain = importlib.import_module(name)
        if domain.detect(src):
            return domain
    raise CheckpointError(f"{src}: no known checkpoint layout (HyenaDNA or Caduceus folders with a config.json, "
                          f"wav2vec 2.0 .pt files of fairseq or fairseq2, hf:REPO_ID, fairseq2:CARD)")


def dispatch(args: argparse.Namespace) -> None:
    if args.verb == "prepare":
        kind = args.dataset_kind
        if kind == "hg38":
            from genomics.data.hg38 import prepare_hg38

            prepare_hg38(fasta=args.fasta, bed=args.bed, download=args.download, out=args.out, seed=args.seed)
        elif kind == "genomic-benchmarks":
            from genomics.data.gb import prepare_genomic_benchmarks

            out = args.out or Path("data/genomic-benchmarks") / args.dataset
            prepare_genomic_benchmarks(
                dataset=args.dataset, source=args.source, fasta=args.fasta, download=args.download,
                holdout_fraction=args.holdout_fraction, seed=args.seed, out=out,
            )
        elif kind == "librispeech":
            from speech.data.prepare import prepare_librispeech

            prepare_librispeech(
                root=args.root, download=args.download, train_subsets=args.train_subsets,
                valid_subsets=args.valid_subsets, valid_fraction=args.valid_fraction, seed=args.seed,
                resample=args.resample, downmix=args.downmix, out=args.out,
            )
        elif kind == "synthetic":
            prepare_synthetic(args.out, args.seed)
    elif args.verb == "pretrain":
        from bio_speech_dyt.jobs import pretrain

        pretrain(args.config, args.overrides, args.out, args.resume)
    elif args.verb == "evaluate":
        if args.eval_kind == "genomic-benchmarks":
            from genomics.jobs.gb_eval import evaluate_gb

            evaluate_gb(args.config, data=args.data, checkpoint=args.checkpoint, seeds=args.seeds,
                        overrides=args.overrides, out=args.out)
        else:
            from speech.jobs.evaluate import evaluate_speech

            evaluate_speech(checkpoint=args.checkpoint, manifest=args.manifest, out=args.out)
    elif args.verb == "import":
        from bio_speech_dyt.pretrained import parse_alpha_init

        pretrained_domain(args.src).import_checkpoint(
            args.src, args.out, norm=args.norm, alpha_init=parse_alpha_init(args.alpha_init), calibrate=args.calibrate,
            trust_pickle=args.trust_pickle)
    elif args.verb == "export":
        from genomics.pretrained import export_run  # the one domain with Hub layouts to write

        export_run(args.run_dir, args.format, args.out)
    elif args.verb == "report":
        from bio_speech_dyt.report import make_report

        make_report(args.runs, out=args.out, analyze=args.analyze)
    elif args.verb == "bench":
        _run_benchmark(args.what, args.full, args.out)
    elif args.verb == "demo":
        from bio_speech_dyt.demo import run_demo

        run_demo(out=args.out)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        dispatch(args)
    except (ConfigError, FileNotFoundError, FileExistsError, ValueError) as e:
        if os.environ.get("BSD_DEBUG"):
            raise
        print(f"bsd {args.verb}: error: {e}  (set BSD_DEBUG=1 for a traceback)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
