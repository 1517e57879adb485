"""Genomics model-step benchmark: HyenaDNA and Caduceus training steps with their native norm
vs DyT (ratios measured side by side, steps interleaved), and the pure-PyTorch chunked
selective scan vs the sequential reference (forward + backward).

``run(full) -> list[dict]``; ``benchmarks/bench_models.py`` aggregates, prints and writes JSON.
Default grid: about a minute on 2 cores; ``full``: paper-sized shapes (the sequential scan at
B4 L1024 d128 alone takes over a minute of CPU).
"""
from __future__ import annotations

import platform
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from genomics.models.caduceus import Caduceus, CaduceusConfig
from genomics.models.hyena import HyenaDNA, HyenaDNAConfig
from genomics.models.selective_scan import selective_scan_chunked, selective_scan_ref
from genomics.tokenizer import A_ID, T_ID

REPEATS = 7  # interleaved native / DyT steps per model


def _device() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def _train_step(model: torch.nn.Module, batch: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        loss = F.cross_entropy(model(batch).flatten(0, 1), batch.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def _interleaved(fns: dict[str, Callable[[], None]], repeats: int) -> dict[str, list[tuple[float, float]]]:
    """(wall, process CPU) seconds of each call, per repeat; one warm-up each, then the functions alternate."""
    for fn in fns.values():
        fn()
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t, c = time.perf_counter(), time.process_time()
            fn()
            times[name].append((time.perf_counter() - t, time.process_time() - c))
    return times


def _model_rows(name: str, build: Callable[[str], torch.nn.Module], native: str, shape: tuple[int, int],
                repeats: int) -> list[dict]:
    torch.manual_seed(0)
    batch = torch.randint(A_ID, T_ID + 1, shape)
    times = _interleaved({norm: _train_step(build(norm), batch) for norm in (native, "dyt")}, repeats)
    tokens = shape[0] * shape[1]
    rows = []
    for norm, ts in times.items():
        s = statistics.median(t for t, _ in ts)
        rows.append({"model": name, "norm": norm, "batch": shape[0], "seq_len": shape[1], "step_ms": s * 1e3,
                     "throughput": tokens / s, "unit": "tokens/s", "device": _device(),
                     "step_ms_repeats": [t * 1e3 for t, _ in ts], "step_cpu_ms_repeats": [c * 1e3 for _, c in ts]})
    return rows


def _scan_row(batch: int, seqlen: int, d_inner: int, d_state: int = 16, repeats: int = 1) -> dict:
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=g).requires_grad_()

    u, delta, z = r(batch, d_inner, seqlen), r(batch, d_inner, seqlen), r(batch, d_inner, seqlen)
    A = (-torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)).requires_grad_()
    B, C, D, bias = r(batch, d_state, seqlen), r(batch, d_state, seqlen), r(d_inner), r(d_inner)

    def fwd_bwd(fn) -> Callable[[], None]:
        return lambda: fn(u, delta, A, B, C, D, z, delta_bias=bias, delta_softplus=True).sum().backward()

    secs = {k: statistics.median(t for t, _ in v) for k, v in
            _interleaved({"chunked": fwd_bwd(selective_scan_chunked), "sequential": fwd_bwd(selective_scan_ref)}, repeats).items()}
    return {"model": "selective_scan", "norm": "-", "batch": batch, "seq_len": seqlen, "d_model": d_inner // 2,
            "chunked_s": secs["chunked"], "sequential_s": secs["sequential"],
            "speedup": secs["sequential"] / secs["chunked"], "device": _device()}


def run(full: bool = False) -> list[dict]:
    hyena_len = 1024 if full else 512
    hyena = lambda norm: HyenaDNA(HyenaDNAConfig(norm=norm, embed_dropout=0.0))  # noqa: E731  tiny-1k
    caduceus = lambda norm: Caduceus(CaduceusConfig(norm=norm))  # noqa: E731  Caduceus-Ph 1k: d118, 4 layers
    rows = _model_rows("hyenadna-tiny-1k", hyena, "layernorm", (8, hyena_len), 9 if full else REPEATS)
    rows += _model_rows("caduceus-ph-1k", caduceus, "rmsnorm", (4, 1024) if full else (2, 256), REPEATS)
    rows.append(_scan_row(4, 1024 if full else 256, 256))  # d_model 128 -> d_inner 256
    return rows


if __name__ == "__main__":
    for row in run(full=False):
        print(row)
