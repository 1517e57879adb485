"""The Triton DyT kernels: on CUDA when there is a GPU, else through the Triton interpreter.

Triton decides at import / decoration time whether ``@triton.jit`` functions are interpreted (its
own ``triton.language`` helpers and lazily imported modules included), so without a GPU,
``TRITON_INTERPRET=1`` must be set before triton is first imported. Collecting this module sets it
for the process when triton is not imported yet (running this file alone, or first). In a full
suite something else (e.g. ``import lightning``) has usually imported triton already: then the
same tests run once more, in a subprocess with ``TRITON_INTERPRET=1``, as one test here.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bio_speech_dyt import kernels
from bio_speech_dyt.kernels import testing
from bio_speech_dyt.kernels.testing import Case

if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed", allow_module_level=True)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _import_triton_kernels():
    if DEVICE == "cpu" and "triton" not in sys.modules:
        os.environ["TRITON_INTERPRET"] = "1"
    from bio_speech_dyt.kernels import triton_dyt

    return triton_dyt


triton_dyt = _import_triton_kernels()

IN_PROCESS = DEVICE == "cuda" or triton_dyt.INTERPRETED
in_process = pytest.mark.skipif(not IN_PROCESS, reason="triton was imported without TRITON_INTERPRET=1: "
                                "run by test_triton_in_interpreter_subprocess")
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # interpreter: numpy overflow in exp2 (-> inf, intended)


@pytest.mark.skipif(IN_PROCESS, reason="the Triton tests run in this process")
def test_triton_in_interpreter_subprocess() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    cmd = [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=Path(__file__).parents[2], timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]


@in_process
@pytest.mark.parametrize("case", testing.standard_cases() + testing.edge_cases(), ids=str)
def test_triton_matches_float64_reference(case: Case) -> None:
    testing.check(case, "triton", DEVICE)


@in_process
def test_tanh_is_accurate_everywhere() -> None:
    """Forward with alpha = 1 and no affine is tanh itself: <= 1e-6 absolute, tiny |z| relatively exact."""
    sweep = torch.linspace(-25, 25, 20001)
    tiny = torch.tensor([1e-30, 1e-20, 1e-8, 1e-6, 1e-4, 1e-2])
    edges = torch.tensor([0.6249, 0.625, 0.6251, 9.99, 10.01, 44.0, 89.0, 1e4, 3e38])
    z = torch.cat([sweep, tiny, -tiny, edges, -edges, torch.tensor([0.0, float("inf"), -float("inf"), float("nan")])])
    z = z.to(DEVICE)
    got = kernels.dyt(z, torch.ones(1, device=DEVICE), None, backend="triton")
    expected = torch.tanh(z.double())
    finite = ~torch.isnan(expected)
    assert torch.isnan(got[~finite]).all()
    assert (got[finite].double() - expected[finite]).abs().max().item() <= 1e-6
    small = z.abs() < 1e-2
    rel = ((got[small].double() - expected[small]) / expected[small].where(expected[small] != 0, 1.0)).abs()
    assert rel.max().item() <= 1e-6


@in_process
def test_gradients_are_bitwise_reproducible() -> None:
    for case in (Case((50, 1000)), Case((20, 768, 3), channels_last=False)):
        inputs = testing.make_inputs(case, DEVICE, seed=5)
        first = testing.run(inputs, case.channels_last, "triton")
        second = testing.run(inputs, case.channels_last, "triton")
        for a, b in zip(first, second):
            assert torch.equal(a, b), case


@in_process
@pytest.mark.parametrize("shape, channels_last, affine", [((3, 7), True, True), ((2, 7, 3), False, False)])
def test_custom_op_with_triton_passes_opcheck(shape, channels_last, affine) -> None:
    gen = torch.Generator().manual_seed(0)
    c = shape[-1] if channels_last else shape[1]
    make = lambda *s: torch.randn(s, generator=gen).to(DEVICE).requires_grad_()  # noqa: E731
    args = (make(*shape), make(1), make(c) if affine else None, make(c) if affine else None, channels_last, "triton")
    torch.library.opcheck(kernels.dyt_forward, args)


@in_process
@pytest.mark.parametrize(
    "cols, block", [(1, 1), (7, 8), (768, 256), (1000, 1024), (1024, 1024), (4096, 1024), (4097, 512)]
)
def test_column_blocks_pad_little(cols: int, block: int) -> None:
    assert triton_dyt._block_k(cols) == block


@pytest.mark.skipif(DEVICE == "cuda", reason="on a GPU the kernels are compiled and run by the tests above")
def test_kernels_compile_for_cuda_without_spills() -> None:
    """The real Triton compiler + ptxas for sm_90 / sm_80 on this CPU machine (tests/support/kernel_aot.py)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-m", "tests.support.kernel_aot"], env=env, cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
