"""GPU check of the fused DyT kernels: correctness against float64, then the benchmark table.

Run by ``benchmarks/gpu_check.sh`` from the source tree (``PYTHONPATH=.``) with any torch >= 2.9
and triton >= 3.5 and nothing else of the stack. Exits non-zero, naming the case, on any failure.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bio_speech_dyt import kernels  # noqa: E402
from bio_speech_dyt.dyt import DyT  # noqa: E402
from bio_speech_dyt.kernels import testing  # noqa: E402
from bio_speech_dyt.kernels.testing import Case  # noqa: E402

# large enough for many reduction groups per channel block and partial last tiles
LARGE_CASES = [
    Case((8192 + 3, 768), dtype=torch.bfloat16),
    Case((4, 1000, 4096), dtype=torch.bfloat16, param_dtype=torch.float32),
    Case((2048, 4097)),
    Case((16, 512, 1000), channels_last=False, dtype=torch.bfloat16),
    Case((3, 4097, 257), channels_last=False),
    Case((4096, 1024), dtype=torch.float16, x_scale=3e3, alpha=2.0),
]


def check_numerics() -> int:
    """Every standard / edge / large case through the triton backend; returns the number of failures."""
    cases = testing.standard_cases((torch.float32, torch.bfloat16, torch.float16)) + testing.edge_cases() + LARGE_CASES
    failures = 0
    for case in cases:
        try:
            testing.check(case, "triton", "cuda")
        except AssertionError as exc:
            failures += 1
            print(f"FAIL {exc}")
    print(f"numerics: {len(cases) - failures}/{len(cases)} cases within tolerance (fp32 1e-5, bf16 1e-2, fp16 2e-3)")
    return failures


def check_determinism() -> int:
    failures = 0
    for case in (Case((32768, 4096), dtype=torch.bfloat16), Case((8, 768, 1000), channels_last=False)):
        inputs = testing.make_inputs(case, "cuda", seed=1)
        runs = [testing.run(inputs, case.channels_last, "triton") for _ in range(3)]
        same = all(torch.equal(a, b) for other in runs[1:] for a, b in zip(runs[0], other))
        failures += not same
        print(f"determinism {case}: {'bitwise equal' if same else 'FAIL: gradients differ between runs'}")
    return failures


def check_compile() -> int:
    """``torch.compile(fullgraph=True)`` of a model with DyT layers matches eager (outputs and grads)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), DyT(256), torch.nn.GELU(), torch.nn.Linear(256, 64), DyT(64))
    model = model.cuda()
    x = torch.randn(4, 128, 64, device="cuda")
    out = torch.compile(model, fullgraph=True)(x)
    out.square().mean().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    ref = model(x)
    ref.square().mean().backward()
    ok = torch.allclose(out, ref, atol=1e-5, rtol=1e-5) and all(
        torch.allclose(g, p.grad, atol=1e-5, rtol=1e-5) for g, p in zip(grads, model.parameters())
    )
    print(f"torch.compile(fullgraph=True): {'matches eager' if ok else 'FAIL: differs from eager'}")
    return not ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="benchmark the full grid")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--skip-bench", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible to torch (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    import triton

    print(f"gpu_check on {torch.cuda.get_device_name()}: torch {torch.__version__}, triton {triton.__version__}")
    assert kernels.resolve_backend("auto", torch.empty(1, device="cuda")) == "triton"
    t0 = time.time()
    failures = check_numerics() + check_determinism() + check_compile()
    print(f"checks took {time.time() - t0:.0f} s")
    if failures:
        print(f"gpu_check: {failures} check(s) FAILED", file=sys.stderr)
        return 1
    if not args.skip_bench:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import bench_kernel

        bench_kernel.main(args.full, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
