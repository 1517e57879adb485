"""DyT kernel benchmark: ``bsd bench kernel [--full]`` (or ``PYTHONPATH=. python benchmarks/bench_kernel.py``).

For each size (tokens M x channels C, dtype) it times forward, backward and forward+backward of

- ``dyt``: our DyT through the one entry point (Triton on CUDA, the fused C++ ``cpp`` kernel on CPU);
- ``torch``: the chunked torch-ops backend (CPU; the CPU path before the C++ kernel);
- ``eager``: the plain autograd definition; ``compiled``: that definition under ``torch.compile``;
- ``layernorm`` / ``rmsnorm``: ``nn.LayerNorm`` / ``nn.RMSNorm``; ``liger``: Liger-Kernel's
  ``LigerDyT`` (CUDA, when installed);

and reports achieved GB/s (bytes: forward 2·M·C·s, backward 3·M·C·s, plus parameters), % of the
device-to-device copy bandwidth measured in the same run, speed-ups of ``dyt`` over each baseline,
tensors saved for backward and, on CUDA, peak memory of forward+backward. CUDA timings use
``triton.testing.do_bench`` (median); CPU timings are medians of rounds that run every method once,
interleaved, so that the machine's load hits all of them alike. Needs only torch (+ triton on CUDA).

On CPU two more columns explain the end-to-end times: ``kernel``, the C++ kernel's forward+backward
into preallocated outputs (the memory-bound part, as GB/s and % of copy bandwidth), and ``fresh``,
what one output-sized ``torch.empty_like(x).fill_(0)`` costs beyond filling a reused buffer. glibc
serves blocks of 32 MiB or more with fresh ``mmap`` pages, so at 16384 x 768 fp32 every method pays
first-touch page faults for its ``y`` and ``dx`` (on a VM that returns freed pages to the host,
~1 GB/s); smaller tensors are reused from the heap.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the source tree, when loaded by path

from bio_speech_dyt.dyt import DyT  # noqa: E402
from bio_speech_dyt.kernels import cpu_dyt, resolve_backend  # noqa: E402

M_DEFAULT = {"cuda": (4096, 32768), "cpu": (4096, 16384)}
M_FULL = {"cuda": (4096, 16384, 32768, 65536), "cpu": (4096, 16384, 32768)}
C_DEFAULT = {"cuda": (768, 4096), "cpu": (768,)}
C_FULL = (768, 1024, 4096)
DTYPES = {"cuda": (torch.bfloat16, torch.float32), "cpu": (torch.float32, torch.bfloat16)}
CPU_MAX_ELEMENTS = 1 << 26  # 256 MiB per fp32 tensor; eager keeps ~6 of them alive
CPU_ROUNDS = 7
BASELINES = ("torch", "eager", "compiled", "layernorm", "rmsnorm", "liger")
TARGETS_DOC = {
    "cuda": "bf16 32768x4096 fwd+bwd: >= 85% of copy bandwidth, >= 2x liger, >= 1.3x compiled",
    "cpu": "fp32 and bf16, 16384x768 and 4096x768 fwd+bwd: >= 1.5x layernorm, >= 1.3x compiled; "
           "16384x768: >= 40% of copy bandwidth",
}


class Timing(NamedTuple):
    """Median times of one method at one size, and its memory."""

    fwd_ms: float
    bwd_ms: float
    fwd_bwd_ms: float
    saved_mb: float
    peak_mb: float | None = None


def _dyt_module(channels: int, backend: str) -> nn.Module:
    module = DyT(channels, alpha_init=0.5, backend=backend)
    with torch.no_grad():  # not the trivial init: weight ~ 1 +- 0.1, bias ~ +- 0.1
        module.weight.add_(0.1 * torch.randn(channels))
        module.bias.add_(0.1 * torch.randn(channels))
    return module


def _liger(channels: int) -> nn.Module | None:
    try:
        from liger_kernel.transformers import LigerDyT
    except ImportError:
        try:
            from liger_kernel.transformers.dyt import LigerDyT
        except ImportError:
            return None
    return LigerDyT(channels, init_alpha=0.5)


def build_methods(channels: int, dtype: torch.dtype, device: str) -> dict[str, Callable[[Tensor], Tensor]]:
    """The modules to compare, on ``device`` in ``dtype`` (parameters too)."""
    methods: dict[str, nn.Module | None] = {
        "dyt": _dyt_module(channels, "auto"),
        "torch": _dyt_module(channels, "torch") if device == "cpu" else None,
        "eager": _dyt_module(channels, "reference"),
        "compiled": _dyt_module(channels, "reference"),
        "layernorm": nn.LayerNorm(channels),
        "rmsnorm": nn.RMSNorm(channels),
        "liger": _liger(channels) if device == "cuda" else None,
    }
    built = {name: m.to(device=device, dtype=dtype) for name, m in methods.items() if m is not None}
    built["compiled"] = torch.compile(built["compiled"])
    return built


def _params(fn: Callable) -> list[Tensor]:
    return list(fn.parameters()) if isinstance(fn, nn.Module) else []


def _zero_grads(tensors: list[Tensor]) -> None:
    for t in tensors:
        t.grad = None


def saved_bytes(fn: Callable[[Tensor], Tensor], x: Tensor) -> int:
    """Bytes of the distinct storages a forward saves for backward (inputs and parameters included)."""
    storages: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    return sum(storages.values())


def _time_cuda(fn: Callable[[Tensor], Tensor], x: Tensor, dy: Tensor) -> Timing:
    from triton.testing import do_bench

    leaves = [x, *_params(fn)]
    fwd = do_bench(lambda: fn(x), grad_to_none=leaves, return_mode="median")
    y = fn(x)
    bwd = do_bench(lambda: y.backward(dy, retain_graph=True), grad_to_none=leaves, return_mode="median")
    del y
    both = do_bench(lambda: fn(x).backward(dy), grad_to_none=leaves, return_mode="median")
    _zero_grads(leaves)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn(x).backward(dy)
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    _zero_grads(leaves)
    return Timing(fwd, bwd, both, saved_bytes(fn, x) / 2**20, peak)


def _time_cpu(methods: dict[str, Callable[[Tensor], Tensor]], x: Tensor, dy: Tensor, rounds: int,
              extra: dict[str, Callable[[], tuple[float, float]]]) -> dict[str, Timing]:
    """Medians over ``rounds`` rounds, each running every method (then every ``extra`` timer:
    () -> (forward s, backward s)) once."""
    def module_step(fn: Callable[[Tensor], Tensor]) -> Callable[[], tuple[float, float]]:
        leaves = [x, *_params(fn)]

        def step() -> tuple[float, float]:
            _zero_grads(leaves)
            t0 = time.perf_counter()
            y = fn(x)
            t1 = time.perf_counter()
            y.backward(dy)
            return t1 - t0, time.perf_counter() - t1

        return step

    steps = {name: module_step(fn) for name, fn in methods.items()} | extra
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            samples[name].append(step())
    out = {}
    for name, s in samples.items():
        fwd, bwd = (statistics.median(v) * 1e3 for v in zip(*s))
        both = statistics.median(f + b for f, b in s) * 1e3
        saved = saved_bytes(methods[name], x) / 2**20 if name in methods else 0.0
        out[name] = Timing(fwd, bwd, both, saved)
    return out


def _cpu_extra_timers(module: nn.Module, x: Tensor, dy: Tensor) -> dict[str, Callable[[], tuple[float, float]]]:
    """``kernel``: the C++ kernel into preallocated outputs; ``fresh``: a fresh output's allocation and first
    touch (``empty_like + fill_``) as forward, the same fill into a reused buffer as backward."""
    y, dx, reused = torch.empty_like(x), torch.empty_like(x), torch.empty_like(x)
    args = (module.alpha, module.weight, module.bias, True)

    def kernel() -> tuple[float, float]:
        t0 = time.perf_counter()
        cpu_dyt.forward(x.detach(), *args, out=y)
        t1 = time.perf_counter()
        cpu_dyt.backward(dy, x.detach(), *args, dx_out=dx)
        return t1 - t0, time.perf_counter() - t1

    def fresh() -> tuple[float, float]:
        t0 = time.perf_counter()
        torch.empty_like(x).fill_(0)
        t1 = time.perf_counter()
        reused.fill_(0)
        return t1 - t0, time.perf_counter() - t1

    return {"kernel": kernel, "fresh": fresh}


def copy_bandwidth(device: str) -> float:
    """Device-to-device copy bandwidth in GB/s (bytes read + written)."""
    n = (1 << 28) if device == "cuda" else (1 << 24)  # 1 GiB / 64 MiB of fp32
    src = torch.randn(n, device=device)
    dst = torch.empty_like(src)
    if device == "cuda":
        from triton.testing import do_bench

        ms = do_bench(lambda: dst.copy_(src), return_mode="median")
    else:
        dst.copy_(src)
        ms = statistics.median(_wall_ms(lambda: dst.copy_(src)) for _ in range(9))
    return 2 * src.numel() * src.element_size() / (ms * 1e-3) / 1e9


def _wall_ms(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def traffic_bytes(m: int, c: int, dtype: torch.dtype) -> dict[str, int]:
    """Minimum bytes moved: forward reads x, writes y; backward reads x, dy, writes dx; plus parameters."""
    s = torch.finfo(dtype).bits // 8
    params = (2 * c + 1) * s
    fwd = 2 * m * c * s + params
    bwd = 3 * m * c * s + 2 * params  # read alpha / weight, write their gradients
    return {"fwd": fwd, "bwd": bwd, "fwd_bwd": fwd + bwd}


def bench_size(m: int, c: int, dtype: torch.dtype, device: str, copy_gbps: float) -> dict:
    """One table row: timings of every method at (m, c, dtype), with bandwidth and speed-ups of ``dyt``."""
    torch.manual_seed(0)
    methods = build_methods(c, dtype, device)
    x = torch.randn(m, c, device=device, dtype=dtype, requires_grad=True)
    dy = torch.randn(m, c, device=device, dtype=dtype)
    usable = {}
    for name, fn in methods.items():  # warm-up (compiles), dropping what cannot run here
        try:
            fn(x).backward(dy)
            usable[name] = fn
        except Exception as exc:  # noqa: BLE001 - a missing compiler / kernel must not stop the table
            print(f"  [{name} skipped at {m}x{c} {dtype}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}]")
        _zero_grads([x, *_params(fn)])
    backend = resolve_backend("auto", x)
    if device == "cuda":
        timings = {name: _time_cuda(fn, x, dy) for name, fn in usable.items()}
    else:
        extra = _cpu_extra_timers(usable["dyt"], x, dy) if backend == "cpp" else {}
        timings = _time_cpu(usable, x, dy, CPU_ROUNDS, extra)
    traffic = traffic_bytes(m, c, dtype)

    def gbps_of(t: Timing) -> dict[str, float]:
        return {k: traffic[k] / (getattr(t, f"{k}_ms") * 1e-3) / 1e9 for k in ("fwd", "bwd", "fwd_bwd")}

    ours = timings["dyt"]
    gbps = gbps_of(ours)
    row = {
        "m": m,
        "c": c,
        "dtype": str(dtype).removeprefix("torch."),
        "backend": backend,
        "timings": {name: t._asdict() for name, t in timings.items() if name != "fresh"},
        "gbps": gbps,
        "pct_copy_bandwidth": {k: 100 * v / copy_gbps for k, v in gbps.items()},
        "speedup_fwd_bwd": {name: t.fwd_bwd_ms / ours.fwd_bwd_ms for name, t in timings.items()
                            if name in methods and name != "dyt"},
        # every method moves at least the same bytes as DyT (a norm reads x and writes y, then reads x and
        # dy and writes dx): a baseline already near the copy bandwidth leaves DyT little to gain while
        # both are memory-bound
        "baseline_pct_copy_bandwidth": {name: 100 * gbps_of(t)["fwd_bwd"] / copy_gbps for name, t in timings.items()
                                        if name in methods and name != "dyt"},
    }
    if "kernel" in timings:
        kernel_gbps = gbps_of(timings["kernel"])
        row["kernel_pct_copy_bandwidth"] = {k: 100 * v / copy_gbps for k, v in kernel_gbps.items()}
        fresh = timings["fresh"]
        row["reused_fill_ms"] = fresh.bwd_ms
        row["fresh_output_ms"] = fresh.fwd_ms - fresh.bwd_ms  # beyond filling a reused buffer
    return row


def targets(rows: list[dict], device: str) -> dict[str, dict]:
    """The issue's performance targets, met or missed (absent when the size was not run), and context
    values (``met: None``, no ``>=`` in the name) that bound what a target can reach."""
    def row(m: int, c: int, dtype: str) -> dict | None:
        return next((r for r in rows if (r["m"], r["c"], r["dtype"]) == (m, c, dtype)), None)

    checks, notes = {}, {}
    if device == "cuda" and (r := row(32768, 4096, "bfloat16")):
        sp = r["speedup_fwd_bwd"]
        checks["pct_copy_bandwidth >= 85"] = r["pct_copy_bandwidth"]["fwd_bwd"]
        checks["vs_liger >= 2"] = sp.get("liger")
        checks["vs_compiled >= 1.3"] = sp.get("compiled")
    if device == "cpu":
        for dtype in ("float32", "bfloat16"):
            for m in (16384, 4096):
                if not (r := row(m, 768, dtype)):
                    continue
                sp, size = r["speedup_fwd_bwd"], f"{dtype} {m}x768"
                checks[f"{size} vs_layernorm >= 1.5"] = sp.get("layernorm")
                if "layernorm" in r["baseline_pct_copy_bandwidth"]:
                    # not a target: the context for the vs_layernorm one (see baseline_pct_copy_bandwidth)
                    notes[f"{size} layernorm_pct_copy_bandwidth"] = r["baseline_pct_copy_bandwidth"]["layernorm"]
                checks[f"{size} vs_compiled >= 1.3"] = sp.get("compiled")
                if m == 16384:
                    checks[f"{size} pct_copy_bandwidth >= 40"] = r["pct_copy_bandwidth"]["fwd_bwd"]
                    if "kernel_pct_copy_bandwidth" in r:
                        checks[f"{size} kernel_pct_copy_bandwidth >= 40"] = r["kernel_pct_copy_bandwidth"]["fwd_bwd"]
    out = {}
    for name, value in checks.items():
        threshold = float(name.split(">=")[1])
        out[name] = {"value": value, "met": None if value is None else value >= threshold}
    out.update({name: {"value": value, "met": None} for name, value in notes.items()})
    return out


def print_row(r: dict) -> None:
    t = r["timings"]["dyt"]
    sp = r["speedup_fwd_bwd"]
    ratios = "  ".join(f"{sp[b]:6.2f}x" if b in sp else f"{'-':>7}" for b in BASELINES)
    saved = f"{t['saved_mb']:.0f}/{r['timings']['eager']['saved_mb']:.0f}" if "eager" in r["timings"] else "-"
    peak = f"{t['peak_mb']:.0f}/{r['timings']['eager']['peak_mb']:.0f}" if t["peak_mb"] is not None else "-"
    kernel = (f" | {r['timings']['kernel']['fwd_bwd_ms']:8.3f} {r['kernel_pct_copy_bandwidth']['fwd_bwd']:5.0f}% "
              f"{r['fresh_output_ms']:7.2f}" if "kernel" in r["timings"] else "")
    print(
        f"{r['dtype']:>8} {r['m']:>6} {r['c']:>5} | {t['fwd_ms']:8.3f} {t['bwd_ms']:8.3f} {t['fwd_bwd_ms']:8.3f} | "
        f"{r['gbps']['fwd_bwd']:7.1f} {r['pct_copy_bandwidth']['fwd_bwd']:5.0f}% | {ratios} | {saved:>11} {peak:>11}"
        f"{kernel}"
    )


def print_header(device: str, info: dict) -> None:
    print(f"DyT kernel benchmark on {info['device_name']} ({device}, {info['threads']} threads), "
          f"torch {info['torch']}, triton {info['triton']}; copy bandwidth {info['copy_gbps']:.1f} GB/s")
    print("times in ms (median); GB/s and %copy of dyt fwd+bwd; speed-up = baseline time / dyt time (fwd+bwd); "
          "saved = MiB saved for backward dyt/eager; peak = MiB peak fwd+bwd dyt/eager"
          + ("; kernel = the C++ kernel fwd+bwd into preallocated outputs (ms, %copy); "
             "fresh = ms one fresh output costs (allocation + first touch)" if device == "cpu" else ""))
    names = "  ".join(f"{b[:7]:>7}" for b in BASELINES)
    kernel = f" | {'kernel':>8} {'%copy':>6} {'fresh':>7}" if device == "cpu" else ""
    print(f"{'dtype':>8} {'M':>6} {'C':>5} | {'fwd':>8} {'bwd':>8} {'fwd+bwd':>8} | {'GB/s':>7} {'%copy':>6} | "
          f"{names} | {'saved MiB':>11} {'peak MiB':>11}{kernel}")


def _device_info(device: str, copy_gbps: float) -> dict:
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    name = torch.cuda.get_device_name() if device == "cuda" else (platform.processor() or platform.machine())
    return {"device": device, "device_name": name, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "triton": triton_version, "copy_gbps": copy_gbps, "targets_doc": TARGETS_DOC[device]}


def grid(device: str, full: bool) -> Iterator[tuple[int, int, torch.dtype]]:
    ms, cs = (M_FULL[device], C_FULL) if full else (M_DEFAULT[device], C_DEFAULT[device])
    for dtype in DTYPES[device]:
        for c in cs:
            for m in ms:
                if device == "cpu" and m * c > CPU_MAX_ELEMENTS:
                    continue
                yield m, c, dtype


def _write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        json.dump(payload, f, indent=1)
    os.replace(f.name, path)


def main(full: bool = False, out: Path = Path("benchmarks/results")) -> dict:
    """Run the grid, print the table, write ``out/kernel_<device>.json``; returns the payload."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    copy_gbps = copy_bandwidth(device)
    info = _device_info(device, copy_gbps)
    print_header(device, info)
    rows = []
    for m, c, dtype in grid(device, full):
        rows.append(bench_size(m, c, dtype, device, copy_gbps))
        print_row(rows[-1])
        sys.stdout.flush()
    checks = targets(rows, device)
    for name, res in checks.items():
        value = "n/a" if res["value"] is None else f"{res['value']:.2f}"
        if ">=" not in name:
            print(f"context {name}: {value}")
            continue
        print(f"target {name}: {value} -> {'met' if res['met'] else 'MISSED' if res['met'] is False else 'not measured'}")
    payload = {"info": info, "full": full, "rows": rows, "targets": checks}
    path = Path(out) / f"kernel_{device}.json"
    _write_json(path, payload)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the full grid (M x C x dtype)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    main(args.full, args.out)
