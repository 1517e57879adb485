"""Compile the DyT Triton kernels for CUDA targets with the real Triton compiler and ptxas, no GPU.

Run as a script (``tests/core/test_kernels_triton.py`` does, in a subprocess without TRITON_INTERPRET):
compiles forward, backward and the reduction kernel for both layouts, with and without affine
parameters, fp32 and bf16, with the block sizes the launchers pick, for sm_90 (and bf16 for sm_80);
prints each kernel's registers and exits non-zero if one fails to compile or spills registers.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from bio_speech_dyt.kernels import triton_dyt

PTXAS = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
SHAPES = {True: (4096, 768), False: (8, 768, 100)}  # channels_last -> a representative input
TYPES = {torch.float32: "fp32", torch.bfloat16: "bf16"}


def _compile(kernel, signature: dict[str, str], constexprs: dict, num_warps: int, arch: int) -> str:
    """Compile to a cubin; returns ptxas's register / spill line."""
    src = ASTSource(fn=kernel, signature={**signature, **{k: "constexpr" for k in constexprs}}, constexprs=constexprs)
    ptx = triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": num_warps}).asm["ptx"]
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(ptx)
    try:
        out = subprocess.run([str(PTXAS), "-v", f"--gpu-name=sm_{arch}a" if arch >= 90 else f"--gpu-name=sm_{arch}",
                              f.name, "-o", os.devnull], capture_output=True, text=True, check=True)
    finally:
        os.unlink(f.name)
    return " ".join(line.split(":")[-1].strip() for line in (out.stdout + out.stderr).splitlines()
                    if "registers" in line or "spill" in line)


def main() -> int:
    if triton_dyt.INTERPRETED:
        print("kernel_aot: TRITON_INTERPRET is set; unset it to compile for CUDA", file=sys.stderr)
        return 2
    if not PTXAS.exists():
        print(f"kernel_aot: no ptxas at {PTXAS}", file=sys.stderr)
        return 2
    failures = 0
    configs = [(90, dt, last, affine) for dt in TYPES for last in (True, False) for affine in (True, False)]
    configs += [(80, torch.bfloat16, last, True) for last in (True, False)]
    for arch, dtype, last, affine in configs:
        t = TYPES[dtype]
        x = torch.empty(SHAPES[last], device="meta")
        for name, kernel, tile, warps in (
            ("forward", triton_dyt._dyt_fwd_kernel, triton_dyt._FWD_TILE, triton_dyt._FWD_WARPS),
            ("backward", triton_dyt._dyt_bwd_kernel, triton_dyt._BWD_TILE, triton_dyt._BWD_WARPS),
        ):
            grid = triton_dyt._grid(x, last, tile)
            flags = {"HAS_WEIGHT": affine, "HAS_BIAS": affine, "CHANNEL_IS_COL": grid.channel_is_col,
                     "BLOCK_R": grid.block_r, "BLOCK_K": grid.block_k}
            if name == "forward":
                sig = {"x_ptr": f"*{t}", "y_ptr": f"*{t}", "alpha_ptr": "*fp32", "w_ptr": f"*{t}", "b_ptr": f"*{t}",
                       "R": "i32", "K": "i32", "n_rblocks": "i32", "n_kblocks": "i32"}
            else:
                sig = {"dy_ptr": f"*{t}", "x_ptr": f"*{t}", "dx_ptr": f"*{t}", "alpha_ptr": "*fp32", "w_ptr": f"*{t}",
                       "part_ptr": "*fp32", "R": "i32", "K": "i32", "C": "i32", "n_tiles": "i32",
                       "tiles_per_group": "i32", "n_kblocks": "i32"}
            label = f"sm_{arch} {t} {'last' if last else 'first'} {'affine' if affine else 'plain'} {name} {flags}"
            try:
                info = _compile(kernel, sig, flags, warps, arch)
            except Exception as exc:  # noqa: BLE001 - report every failing configuration
                failures += 1
                print(f"FAIL {label}: {type(exc).__name__}: {exc}")
                continue
            spills = [int(n) for n in re.findall(r"(\d+) bytes spill", info)]
            failures += any(spills)
            print(f"{'FAIL (spills)' if any(spills) else 'ok'} {label}: {info}")
    sig = {"part_ptr": "*fp32", "dalpha_ptr": "*fp32", "dw_ptr": "*bf16", "db_ptr": "*bf16", "G": "i32", "C": "i32",
           "g_iters": "i32", "c_iters": "i32"}
    flags = {"HAS_WEIGHT": True, "HAS_BIAS": True, "BLOCK_G": 16, "BLOCK_C": 256}
    try:
        print(f"ok reduce: {_compile(triton_dyt._dyt_bwd_reduce_kernel, sig, flags, 4, 90)}")
    except Exception as exc:  # noqa: BLE001
        failures += 1
        print(f"FAIL reduce: {type(exc).__name__}: {exc}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
