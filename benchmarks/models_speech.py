"""Speech rows of ``bsd bench models``: wav2vec 2.0 (fairseq2) training steps, LayerNorm vs DyT.

Both norms are built from the same seed and timed side by side, alternating, on the same
fixed batch (forward + backward + AdamW step, the quantizer run eagerly on CPU as in
training). Default grid: the CPU tiny model on 8 × 2 s; ``--full`` adds ``base`` on 4 × 4 s
(and on CUDA runs everything there). Rows: model, norm, step_ms (median), throughput in
samples (utterances) per second, and every step's wall and process CPU time (``bsd bench models``
turns them into DyT / LayerNorm throughput ratios).
"""
from __future__ import annotations

import statistics
import time

import torch

from speech.loss import forward_loss
from speech.models.wav2vec2 import Wav2Vec2ModelConfig, build_wav2vec2

# (arch, batch, seconds of audio, timed steps: interleaved native / DyT)
GRID = [("tiny", 8, 2.0, 7)]
FULL = [("base", 4, 4.0, 4)]


def _stepper(arch: str, norm: str, device: torch.device):
    torch.manual_seed(0)
    cfg = Wav2Vec2ModelConfig(arch=arch, norm=norm, num_distractors=10, codebook_entries=32, mask_span=5)
    model, _ = build_wav2vec2(cfg)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(batch: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        forward_loss(model, batch, cfg).loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def _bench(arch: str, batch: int, seconds: float, steps: int, device: torch.device) -> list[dict]:
    x = torch.randn(batch, int(seconds * 16_000), generator=torch.Generator().manual_seed(0)).to(device)
    steppers = {norm: _stepper(arch, norm, device) for norm in ("layernorm", "dyt")}
    times: dict[str, list[tuple[float, float]]] = {norm: [] for norm in steppers}
    for norm, step in steppers.items():  # warm-up
        step(x)
    for _ in range(steps):  # alternate, so that load changes hit both norms alike
        for norm, step in steppers.items():
            t, c = time.perf_counter(), time.process_time()
            step(x)
            times[norm].append((time.perf_counter() - t, time.process_time() - c))
    rows = []
    for norm, ts in times.items():
        ms = statistics.median(t for t, _ in ts) * 1e3
        rows.append({"model": f"wav2vec2_{arch} ({batch}x{seconds:g}s, {device.type})", "norm": norm,
                     "step_ms": ms, "throughput": batch / (ms / 1e3), "unit": "samples/s",
                     "step_ms_repeats": [t * 1e3 for t, _ in ts], "step_cpu_ms_repeats": [c * 1e3 for _, c in ts]})
    return rows


def run(full: bool = False) -> list[dict]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows: list[dict] = []
    for arch, batch, seconds, steps in GRID + (FULL if full else []):
        rows += _bench(arch, batch, seconds, steps, device)
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
