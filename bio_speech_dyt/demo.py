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
NORMS = {"genomics": ("layernorm", "dyt"), "speech": ("layernorm", "dyt")}


def _done(run_dir: Path) -> bool:
    return (run_dir / "metrics.json").is_file()


def _step(title: str, run_dir: Path, fn) -> Path:
    if _done(run_dir):
        print(f"[demo] {title}: reusing {run_dir}")
        return run_dir
    print(f"[demo] {title} -> {run_dir}")
    t0 = time.perf_counter()
    if run_dir.exists():  # an interrupted earlier attempt: continue it
        fn(resume=True)
    else:
        fn(resume=False)
    print(f"[demo] {title}: {time.perf_counter() - t0:.0f} s")
    return run_dir


def _data_ready() -> bool:
    return all((DATA / p / "stats.json").is_file() for p in ("genome", "gb", "speech"))


def run_demo(out: Path = Path("runs/demo")) -> dict:
    from bio_speech_dyt.cli import prepare_synthetic
    from bio_speech_dyt.jobs import pretrain
    from bio_speech_dyt.report import make_report
    from genomics.jobs.gb_eval import evaluate_gb
    from speech.jobs.evaluate import evaluate_speech

    t_start = time.perf_counter()
    out = Path(out)
    if _data_ready():
        print(f"[demo] reusing prepared data in {DATA}")
    else:
        prepare_synthetic(DATA)

    runs: list[Path] = []
    pretrained: list[Path] = []
    for norm in NORMS["genomics"]:
        pt_dir = out / f"hyenadna_pretrain_{norm}"
        cfg = CONFIGS / "genomics/cpu" / f"hyenadna_tiny_pretrain_{norm}.yaml"
        runs.append(_step(f"HyenaDNA pretraining ({norm})", pt_dir,
                          lambda resume, c=cfg, d=pt_dir: pretrain(c, [], d, resume)))
        pretrained.append(pt_dir / "checkpoints" / "last.ckpt")
        gb_dir = out / f"hyenadna_gb_{norm}"
        gb_cfg = CONFIGS / "genomics/cpu" / f"hyenadna_tiny_gb_{norm}.yaml"
        runs.append(_step(f"GenomicBenchmarks fine-tuning ({norm})", gb_dir,
                          lambda resume, c=gb_cfg, d=gb_dir, k=pt_dir: evaluate_gb(
                              c, data=[DATA / "gb"], checkpoint=k / "checkpoints" / "last.ckpt",
                              seeds=None, overrides=[], out=d)))
    for norm in NORMS["speech"]:
        sp_dir = out / f"wav2vec2_pretrain_{norm}"
        cfg = CONFIGS / "speech/cpu" / f"wav2vec2_tiny_{norm}.yaml"
        runs.append(_step(f"wav2vec 2.0 pretraining ({norm})", sp_dir,
                          lambda resume, c=cfg, d=sp_dir: pretrain(c, [], d, resume)))
        pretrained.append(sp_dir / "checkpoints" / "last.ckpt")
        ev_dir = out / f"wav2vec2_eval_{norm}"
        runs.append(_step(f"wav2vec 2.0 validation ({norm})", ev_dir,
                          lambda resume, d=ev_dir, k=sp_dir: evaluate_speech(
                              checkpoint=k / "checkpoints" / "last.ckpt",
                              manifest=DATA / "speech" / "valid.tsv", out=d)))

    data = make_report(runs, out=out, analyze=pretrained)
    print(console_summary(out / "report.md"))
    print(f"[demo] report with plots: {out / 'report.md'}  ({time.perf_counter() - t_start:.0f} s in all)")
    return data


def console_summary(report_md: Path) -> str:
    """The report's headings and tables (LN vs DyT, paper numbers), without figures."""
    keep = [ln for ln in report_md.read_text().splitlines() if ln.startswith(("#", "|"))]
    return "\n".join(("\n" + ln) if ln.startswith("#") else ln for ln in keep)
