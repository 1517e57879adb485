"""``bsd demo``: the whole suite on the embedded default data, small (≤ 15 min on 2 cores).

1. ``bsd prepare synthetic`` (genome, GB-format task, synthesized speech) — reused if present;
2. HyenaDNA-tiny pretraining with LayerNorm and with DyT, then GB fine-tuning of both;
3. wav2vec 2.0-tiny pretraining with LayerNorm and with DyT, then validation loss of both;
4. ``bsd report`` over every run, with the paper's norm analysis of the pretrained checkpoints.

Finished runs (a ``metrics.json`` present) are reused, so re-running only redoes what is missing.
"""
from __future__ import annotations

import time
from pathlib import Path

CONFIGS = Path("configs")
DATA = Path("data/synthetic")
NORMS = ("layernorm", "dyt")


def _evaluate_gb(norm: str, checkpoint: Path, out: Path) -> None:
    from genomics.jobs.gb_eval import evaluate_gb

    evaluate_gb(CONFIGS / "genomics/cpu" / f"hyenadna_tiny_gb_{norm}.yaml", data=[DATA / "gb"],
                checkpoint=checkpoint, seeds=None, overrides=[], out=out)


def _evaluate_speech(norm: str, checkpoint: Path, out: Path) -> None:
    from speech.jobs.evaluate import evaluate_speech

    evaluate_speech(checkpoint=checkpoint, manifest=DATA / "speech" / "valid.tsv", out=out)


#: (run-name prefix, model, pretraining config, evaluation title, evaluation run suffix, evaluation)
PIPELINES = (
    ("hyenadna", "HyenaDNA", "genomics/cpu/hyenadna_tiny_pretrain_{norm}.yaml", "GenomicBenchmarks fine-tuning",
     "gb", _evaluate_gb),
    ("wav2vec2", "wav2vec 2.0", "speech/cpu/wav2vec2_tiny_{norm}.yaml", "wav2vec 2.0 validation",
     "eval", _evaluate_speech),
)


def _step(title: str, run_dir: Path, fn) -> Path:
    """Run ``fn(resume)`` into ``run_dir`` unless it already finished (a ``metrics.json``)."""
    if (run_dir / "metrics.json").is_file():
        print(f"[demo] {title}: reusing {run_dir}")
        return run_dir
    print(f"[demo] {title} -> {run_dir}")
    t0 = time.perf_counter()
    fn(run_dir.exists())  # an interrupted earlier attempt is continued
    print(f"[demo] {title}: {time.perf_counter() - t0:.0f} s")
    return run_dir


def _data_ready() -> bool:
    return all((DATA / p / "stats.json").is_file() for p in ("genome", "gb", "speech"))


def run_demo(out: Path = Path("runs/demo")) -> dict:
    from bio_speech_dyt.cli import prepare_synthetic
    from bio_speech_dyt.jobs import pretrain
    from bio_speech_dyt.report import make_report

    t_start = time.perf_counter()
    out = Path(out)
    if _data_ready():
        print(f"[demo] reusing prepared data in {DATA}")
    else:
        prepare_synthetic(DATA)

    runs: list[Path] = []
    pretrained: list[Path] = []
    for prefix, model, config, eval_title, eval_suffix, evaluate in PIPELINES:
        for norm in NORMS:
            pt_dir = out / f"{prefix}_pretrain_{norm}"
            cfg = CONFIGS / config.format(norm=norm)
            runs.append(_step(f"{model} pretraining ({norm})", pt_dir,
                              lambda resume, c=cfg, d=pt_dir: pretrain(c, [], d, resume)))
            ckpt = pt_dir / "checkpoints" / "last.ckpt"
            pretrained.append(ckpt)
            ev_dir = out / f"{prefix}_{eval_suffix}_{norm}"
            runs.append(_step(f"{eval_title} ({norm})", ev_dir,
                              lambda resume, n=norm, k=ckpt, d=ev_dir, f=evaluate: f(n, k, d)))

    data = make_report(runs, out=out, analyze=pretrained)
    print(console_summary(out / "report.md"))
    print(f"[demo] report with plots: {out / 'report.md'}  ({time.perf_counter() - t_start:.0f} s in all)")
    return data


def console_summary(report_md: Path) -> str:
    """The report's headings and tables (LN vs DyT, paper numbers), without figures."""
    keep = [ln for ln in report_md.read_text().splitlines() if ln.startswith(("#", "|"))]
    return "\n".join(("\n" + ln) if ln.startswith("#") else ln for ln in keep)
