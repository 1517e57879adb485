"""``bsd`` — the front door: prepare / pretrain / evaluate / import / export / report / bench / demo.

The core verbs (pretrain, report, bench, demo) are defined here; ``prepare`` and ``evaluate``
sub-commands, tasks and checkpoint importers come from the installed domains
(:mod:`bio_speech_dyt.tasks`). Every user error — bad input, config or state, a file that
cannot be read or written — ends in one line naming the file, record or key and exit status 2;
``BSD_DEBUG=1`` shows the traceback.
"""
from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path

from bio_speech_dyt.tasks import domains


def seeds_arg(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds expects comma-separated integers, got {text!r}") from None
    if any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"--seeds expects non-negative integers, got {text!r}")
    return seeds


def list_arg(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def add_job_arguments(p: argparse.ArgumentParser) -> None:
    """``--set``, ``--out``, ``--resume``: the flags every job has."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", type=Path, help="run directory (default runs/CONFIG_STEM)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (finished parts are kept)")


class _Parser(argparse.ArgumentParser):
    """argparse with the option named in every error (``--seed: invalid int value: 'x'``)."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _seed_type(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _add_domain_verbs(parent: argparse._SubParsersAction, verbs, fallback_help: str) -> None:
    for verb in verbs:
        p = parent.add_parser(verb.name, help=verb.help)
        verb.add_arguments(p)
        p.set_defaults(handler=verb.run)
        for action in p._actions:  # every --seed is checked the same way
            if action.dest == "seed" and action.type is int:
                action.type = _seed_type


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="bsd", description="bio-speech-dyt: DyT (Dynamic Tanh) for wav2vec 2.0 speech and "
                                         "HyenaDNA/Caduceus genomics pretraining.")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    installed = domains()

    prep = verbs.add_parser("prepare", help="prepare a dataset (" + ", ".join(
        [v.name for d in installed for v in d.prepare] + ["synthetic"]) + ")")
    kinds = prep.add_subparsers(dest="dataset_kind", required=True, metavar="DATASET")
    for d in installed:
        _add_domain_verbs(kinds, d.prepare, d.name)
    syn = kinds.add_parser("synthetic", help="the embedded default data, made locally (no network)")
    syn.add_argument("--out", type=Path, default=Path("data/synthetic"))
    syn.add_argument("--seed", type=_seed_type, default=0)
    syn.set_defaults(handler=lambda a: prepare_synthetic(a.out, a.seed))

    pt = verbs.add_parser("pretrain", help="pretrain a model from a YAML config")
    pt.add_argument("config", type=Path)
    add_job_arguments(pt)
    pt.set_defaults(handler=_pretrain)

    ev = verbs.add_parser("evaluate", help="evaluate: " + ", ".join(v.name for d in installed for v in d.evaluate))
    evk = ev.add_subparsers(dest="eval_kind", required=True, metavar="KIND")
    for d in installed:
        _add_domain_verbs(evk, d.evaluate, d.name)

    im = verbs.add_parser("import", help="a published checkpoint (HyenaDNA, Caduceus, wav2vec 2.0) into a run directory")
    im.add_argument("src", help="checkpoint folder or file, hf:REPO_ID or fairseq2:CARD")
    im.add_argument("--out", type=Path, required=True, help="the run directory to create (must not exist or be empty)")
    im.add_argument("--norm", choices=["dyt"], help="convert every LayerNorm/RMSNorm to DyT")
    im.add_argument("--alpha-init", default="0.5", help="alpha0 of the DyTs, or 'fit' (with --calibrate)")
    im.add_argument("--calibrate", type=Path, metavar="DATA_DIR",
                    help="prepared genome or GB task, or LibriSpeech manifests: the batch --alpha-init fit measures")
    im.add_argument("--trust-pickle", action="store_true",
                    help="load a checkpoint that needs arbitrary unpickling (can run code: trusted sources only)")
    im.set_defaults(handler=_import)

    ex = verbs.add_parser("export", help="a LayerNorm/RMSNorm run back to its published layout")
    ex.add_argument("run_dir", type=Path)
    ex.add_argument("--format", default="hf", help="hf (the layout the run came from) or a layout name")
    ex.add_argument("--out", type=Path, required=True)
    ex.set_defaults(handler=_export)

    rp = verbs.add_parser("report", help="LN-vs-DyT tables and plots from run directories")
    rp.add_argument("runs", type=Path, nargs="*")
    rp.add_argument("--out", type=Path, required=True)
    rp.add_argument("--analyze", type=Path, action="append", default=[], metavar="CKPT",
                    help="plot norm input/output curves of a checkpoint (the paper's analysis)")
    rp.set_defaults(handler=_report)

    bn = verbs.add_parser("bench", help="benchmarks (print a table, write JSON)")
    bn.add_argument("what", choices=["kernel", "models", "data"])
    bn.add_argument("--full", action="store_true", help="the full grid (default: ≤ 3 min on 2 cores)")
    bn.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    bn.set_defaults(handler=_bench)

    from bio_speech_dyt import study

    sd = verbs.add_parser("study", help="a norm x variant x seed grid from one YAML (resumable, parallel), then a report")
    study.add_arguments(sd)
    sd.set_defaults(handler=_study)

    dm = verbs.add_parser("demo", help="everything above on the embedded default data, small")
    dm.add_argument("--out", type=Path, default=Path("runs/demo"))
    dm.set_defaults(handler=_demo)
    return p


def prepare_synthetic(out: Path, seed: int = 0) -> list[Path]:
    """The embedded default data: every domain's part under ``out`` (genome/, gb/, speech/)."""
    made: list[Path] = []
    for d in domains():
        if d.make_synthetic is not None:
            made += d.make_synthetic(Path(out), seed)
    return made


def _pretrain(a):
    from bio_speech_dyt.jobs import pretrain

    return pretrain(a.config, a.overrides, a.out, a.resume)


def _importers():
    return [(d.name, d.importer()) for d in domains() if d.importer is not None]


def importer_for(src: str):
    """The installed domain's importer that recognises ``src`` (a folder, file, hf:REPO_ID or
    fairseq2:CARD)."""
    from bio_speech_dyt.checkpoints import CheckpointError

    for _, importer in _importers():
        if importer.detect(src):
            return importer
    raise CheckpointError(f"{src}: no known checkpoint layout (HyenaDNA or Caduceus folders with a config.json, "
                          f"wav2vec 2.0 .pt files of fairseq or fairseq2, hf:REPO_ID, fairseq2:CARD)")


def _import(a):
    from bio_speech_dyt.pretrained import parse_alpha_init

    return importer_for(a.src).import_checkpoint(a.src, a.out, norm=a.norm, alpha_init=parse_alpha_init(a.alpha_init),
                                                 calibrate=a.calibrate, trust_pickle=a.trust_pickle)


def _export(a):
    from bio_speech_dyt.checkpoints import CheckpointError

    exporters = [imp for _, imp in _importers() if hasattr(imp, "export_run")]
    if not exporters:
        raise CheckpointError("no installed domain can export a run")
    return exporters[0].export_run(a.run_dir, a.format, a.out)


def _report(a):
    from bio_speech_dyt.report import make_report

    return make_report(a.runs, out=a.out, analyze=a.analyze)


def _bench(a):
    import importlib

    importlib.import_module(f"benchmarks.bench_{a.what}").main(full=a.full, out=a.out)


def _study(a):
    from bio_speech_dyt import study

    status = study.run(a)
    if status:
        raise SystemExit(status)


def _demo(a):
    from bio_speech_dyt.demo import run_demo

    return run_demo(out=a.out)


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean bad input, config or state (exit 2), not a bug."""
    from bio_speech_dyt.config import ConfigError
    from bio_speech_dyt.locks import LockedError
    from bio_speech_dyt.train.module import NonFiniteLossError

    return (ConfigError, FileNotFoundError, FileExistsError, ValueError, LockedError, NonFiniteLossError,
            PermissionError, NotADirectoryError, IsADirectoryError, UnicodeError)


def describe_os_error(e: OSError) -> str:
    """One line for a file-system failure, with the path and what to do."""
    path = e.filename or "?"
    if e.errno == errno.ENOSPC:
        return f"{path}: no space left on the device; free space or choose another --out (nothing was published)"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{path}: permission denied; choose a writable --out"
    if e.errno == errno.ENOTDIR:
        return f"{path}: a path component is a file, not a folder; choose another --out"
    return f"{path}: {e.strerror or e}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    verb = args.verb
    try:
        args.handler(args)
    except user_errors() as e:
        if os.environ.get("BSD_DEBUG"):
            raise
        text = describe_os_error(e) if isinstance(e, OSError) and e.errno else str(e)
        print(f"bsd {verb}: error: {text}  (set BSD_DEBUG=1 for a traceback)", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, I/O errors: the state is intact, the cause is outside
        if os.environ.get("BSD_DEBUG") or not e.errno:
            raise
        print(f"bsd {verb}: error: {describe_os_error(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
