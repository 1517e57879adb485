"""``bsd report``: LN-vs-DyT tables and plots from run directories, and the paper's norm-layer
analysis of checkpoints.

- :func:`make_report` — run directories (+ checkpoints) → ``report.md``, ``report.json``, PNGs.
- :func:`analyze_model` / :func:`analyze_checkpoint` — norm input/output curves with tanh fits
  (LayerNorm / RMSNorm) and learned curves with saturation (DyT).
- :func:`fit_tanh` — least-squares ``scale * tanh(alpha * x)``.
"""
from bio_speech_dyt.report.analysis import analyze_checkpoint, analyze_model
from bio_speech_dyt.report.builder import make_report
from bio_speech_dyt.report.fit import TanhFit, fit_tanh
from bio_speech_dyt.report.runs import Run, load_run, load_runs, pair_runs

__all__ = ["make_report", "analyze_model", "analyze_checkpoint", "fit_tanh", "TanhFit", "Run", "load_run", "load_runs",
           "pair_runs"]
