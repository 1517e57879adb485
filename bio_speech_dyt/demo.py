"""``bsd demo``: the whole suite on the embedded default data, small (≤ 15 min on 2 cores).

1. ``bsd prepare synthetic`` (genome, GB-format task, synthesized speech) — each part kept if it is
   up to date (made by the same generator version and seed), refused with a message if an older
   generator made it;
2. HyenaDNA-tiny pretraining with LayerNorm and with DyT, then GB fine-tuning of both;
3. wav2vec 2.0-tiny pretraining with LayerNorm and with DyT, then validation loss of both;
4. ``bsd report`` over every run, with the paper's norm analysis of the pretrained checkpoints.

Finished runs (a ``metrics.json`` present) are reused, so re-running only redoes what is missing.
"""
from __future__ import annotations

import time
from pathlib import Path

DATA = Path("data/synthetic")


def _step(title: str, run_dir: Path, fn) -> Path:
    """Run ``fn(resume)`` into ``run_dir``; an earlier attempt is resumed (a finished one is
    kept by the harness as it is)."""
    print(f"[demo] {title} -> {run_dir}")
    t0 = time.perf_counter()
    fn(run_dir.exists())
    print(f"[demo] {title}: {time.perf_counter() - t0:.0f} s")
    return run_dir


def run_demo(out: Path = Path("runs/demo")) -> dict:
    from bio_speech_dyt.cli import prepare_synthetic
    from bio_speech_dyt.jobs import pretrain
    from bio_speech_dyt.report import make_report
    from bio_speech_dyt.tasks import domains

    t_start = time.perf_counter()
    out = Path(out)
    prepare_synthetic(DATA)

    runs: list[Path] = []
    pretrained: list[Path] = []
    for step in (s for d in domains() for s in d.demo):
        for norm in step.norms:
            pt_dir = out / f"{step.name}_pretrain_{norm}"
            cfg = Path(step.pretrain_config.format(norm=norm))
            runs.append(_step(f"{step.title} pretraining ({norm})", pt_dir,
                              lambda resume, c=cfg, d=pt_dir: pretrain(c, [], d, resume)))
            ckpt = pt_dir / "checkpoints" / "last.ckpt"
            pretrained.append(ckpt)
            ev_dir = out / f"{step.name}_{step.evaluate_suffix}_{norm}"
            runs.append(_step(f"{step.evaluate_title} ({norm})", ev_dir,
                              lambda resume, n=norm, k=ckpt, d=ev_dir, f=step.evaluate: f(n, k, d, resume)))

    data = make_report(runs, out=out, analyze=pretrained)
    print(console_summary(out / "report.md"))
    print(f"[demo] report with plots: {out / 'report.md'}  ({time.perf_counter() - t_start:.0f} s in all)")
    return data


def console_summary(report_md: Path) -> str:
    """The report's headings and tables (LN vs DyT, paper numbers), without figures."""
    keep = [ln for ln in report_md.read_text().splitlines() if ln.startswith(("#", "|"))]
    return "\n".join(("\n" + ln) if ln.startswith("#") else ln for ln in keep)
