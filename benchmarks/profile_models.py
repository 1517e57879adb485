"""Where a CPU training step's time goes: ``torch.profiler`` top ops of HyenaDNA-tiny, Caduceus-Ph
tiny and wav2vec 2.0 tiny, native norm vs DyT, on the ``bsd bench models`` shapes.

``PYTHONPATH=. python benchmarks/profile_models.py [--steps N] [--top K]`` prints, per model and
norm, the ops with the most self CPU time over N steps (after one warm-up step), with their
share of the step, and the share of the norm ops themselves. Shares, not times, are what to read:
they hold up on a shared machine.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Callable

import torch
from torch.profiler import ProfilerActivity, profile

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the source tree, when loaded by path

NORM_OPS = ("bsd::dyt_forward", "bsd::dyt_backward", "aten::native_layer_norm", "aten::native_layer_norm_backward",
            "aten::_fused_rms_norm", "aten::_fused_rms_norm_backward")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def steppers() -> dict[str, tuple[str, Callable[[str], Callable[[], None]]]]:
    """model -> (native norm, norm -> one training step), built as ``bsd bench models`` builds them."""
    genomics, speech = _load("models_genomics"), _load("models_speech")
    from genomics.models.caduceus import Caduceus, CaduceusConfig
    from genomics.models.hyena import HyenaDNA, HyenaDNAConfig
    from genomics.tokenizer import A_ID, T_ID

    def genomics_step(build: Callable[[str], torch.nn.Module], shape: tuple[int, int]):
        def make(norm: str) -> Callable[[], None]:
            torch.manual_seed(0)
            return genomics._train_step(build(norm), torch.randint(A_ID, T_ID + 1, shape))
        return make

    def speech_step(norm: str) -> Callable[[], None]:
        arch, batch, seconds, _ = speech.GRID[0]
        step = speech._stepper(arch, norm, torch.device("cpu"))
        x = torch.randn(batch, int(seconds * 16_000), generator=torch.Generator().manual_seed(0))
        return lambda: step(x)

    return {
        "hyenadna-tiny-1k": ("layernorm", genomics_step(lambda n: HyenaDNA(HyenaDNAConfig(norm=n, embed_dropout=0.0)), (8, 512))),
        "caduceus-ph-1k": ("rmsnorm", genomics_step(lambda n: Caduceus(CaduceusConfig(norm=n)), (2, 256))),
        "wav2vec2_tiny": ("layernorm", speech_step),
    }


def profile_step(step: Callable[[], None], steps: int) -> list[tuple[str, float, int]]:
    """(op, self CPU seconds per step, calls per step), most expensive first."""
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    rows = [(e.key, e.self_cpu_time_total / 1e6 / steps, e.count // steps) for e in prof.key_averages()]
    return sorted(rows, key=lambda r: -r[1])


def main(steps: int = 3, top: int = 8) -> None:
    print(f"torch.profiler, {torch.get_num_threads()} threads, {steps} steps; self CPU time per step")
    for model, (native, make) in steppers().items():
        for norm in (native, "dyt"):
            rows = profile_step(make(norm), steps)
            total = sum(r[1] for r in rows)
            norm_share = sum(r[1] for r in rows if r[0] in NORM_OPS) / total
            print(f"\n{model} / {norm}: {total * 1e3:.1f} ms of op time per step, norm ops {100 * norm_share:.1f}%")
            for name, secs, calls in rows[:top]:
                print(f"  {100 * secs / total:5.1f}%  {secs * 1e3:8.2f} ms  {calls:5d} calls  {name}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    main(args.steps, args.top)
