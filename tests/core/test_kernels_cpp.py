"""The ``cpp`` DyT backend: the fused C++ CPU kernel, its build cache and its fallback.

Numerics against float64 on fresh random inputs with poisoned outputs go through
:mod:`bio_speech_dyt.kernels.testing`, like the other backends. The first test to need the
library compiles it into the user cache (seconds), once per machine.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from bio_speech_dyt import kernels
from bio_speech_dyt.kernels import cpu_dyt, testing
from bio_speech_dyt.kernels.testing import Case

ROOT = Path(__file__).resolve().parents[2]
CASES = testing.standard_cases() + testing.edge_cases()  # fp32, bf16; fp16 among the edge cases


@pytest.mark.parametrize("case", CASES, ids=str)
def test_cpp_backend_matches_float64_reference(case: Case) -> None:
    testing.check(case, "cpp", "cpu")


@pytest.mark.parametrize(
    "case",
    [
        Case((3, 300, 7)),  # several channels-last tasks (256 rows each) reduced in order
        Case((2, 5000)),  # channels-last tasks split over channel blocks (4096 channels each)
        Case((3, 5, 1100), channels_last=False, dtype=torch.bfloat16),  # rows summed in 512-element blocks
        Case((300, 3, 2), channels_last=False),  # channels-first batch blocks
    ],
    ids=str,
)
def test_cpp_backend_task_grid(case: Case) -> None:
    testing.check(case, "cpp", "cpu")


def _reference_in_row_chunks(inputs: testing.Inputs, rows: int = 2048) -> tuple[testing.Outputs, testing.Outputs]:
    """:func:`testing.reference` of a channels-last input, chunk by chunk of rows: float64 temporaries of a
    few MiB (reused by malloc) instead of dozens of fresh 100 MiB ones. Sums and scales add up over the
    chunks, in float64; maxima take the maximum."""
    parts = [testing.reference(testing.Inputs(inputs.x[i:i + rows], *inputs[1:4], inputs.dy[i:i + rows]), True)
             for i in range(0, inputs.x.shape[0], rows)]
    exact, scale = zip(*parts)
    combine = (torch.cat, torch.cat, sum, sum, sum)
    combine_scale = (max, max, sum, sum, sum)
    return (testing.Outputs(*(f(list(col)) for f, col in zip(combine, zip(*exact)))),
            testing.Outputs(*(f(list(col)) for f, col in zip(combine_scale, zip(*scale)))))


def test_cpp_backend_at_scale() -> None:
    """16384 x 768 fp32: each channel's sums run over 16384 rows (blocked partial sums keep them accurate)."""
    inputs = testing.make_inputs(Case((16384, 768)), "cpu", seed=1)
    got = testing.run(inputs, True, "cpp")
    exact, scale = _reference_in_row_chunks(inputs)
    errs = {name: testing.error(*t) for name, *t in zip(testing.OUTPUTS, got, exact, scale)}
    assert errs["y"] <= 1e-5 and errs["dx"] <= 1e-5, errs
    assert max(errs["dalpha"], errs["dweight"], errs["dbias"]) <= 1e-4, errs


def test_tanh_accuracy_saturation_and_specials() -> None:
    """tanh(alpha x) with alpha = 1 and no affine: <= 1e-6 absolute over [-12, 12], relative for tiny inputs,
    exactly +-1 when saturated, NaN for NaN."""
    dense = torch.linspace(-12, 12, 2_000_001, dtype=torch.float64)
    tiny = torch.logspace(-38, -3, 100_001, dtype=torch.float64)
    specials = torch.tensor([0.0, -0.0, 8.75, -8.75, 9.0, 20.0, 1e30, -1e30, float("inf"), -float("inf"),
                             float("nan"), 1e-45], dtype=torch.float64)
    x = torch.cat([dense, tiny, -tiny, specials]).float()
    t = kernels.dyt(x, torch.ones(1), None, None, backend="cpp").double()
    exact = torch.tanh(x.double())
    finite = ~torch.isnan(exact)
    assert torch.equal(torch.isnan(t), ~finite)
    assert (t[finite] - exact[finite]).abs().max() <= 1e-6
    small = (x.abs() < 1e-3) & (x.abs() > 1e-37)
    assert ((t[small] - exact[small]).abs() / exact[small].abs()).max() <= 1e-6
    saturated = x.abs() >= 9
    assert torch.equal(t[saturated], torch.sign(x[saturated]).double())
    assert torch.equal(t[x == 0], x[x == 0].double())  # signed zeros kept


@pytest.mark.parametrize("case", [Case((300, 768)), Case((4, 64, 700), channels_last=False, dtype=torch.bfloat16)], ids=str)
def test_cpp_backend_is_deterministic(case: Case) -> None:
    inputs = testing.make_inputs(case, "cpu", seed=3)
    first = testing.run(inputs, case.channels_last, "cpp")
    second = testing.run(inputs, case.channels_last, "cpp")
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_cpp_backend_rejects_what_it_cannot_run() -> None:
    with pytest.raises(ValueError, match="cpp DyT backend"):
        kernels.dyt(torch.randn(2, 3, dtype=torch.float64), torch.ones(1, dtype=torch.float64), None, backend="cpp")


def test_auto_picks_cpp_and_the_cpu_env_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(2, 3)
    monkeypatch.delenv(kernels.ENV_BACKEND, raising=False)
    monkeypatch.delenv(kernels.ENV_CPU_BACKEND, raising=False)
    assert kernels.resolve_backend("auto", x) == "cpp"
    assert kernels.resolve_backend("auto", x.double()) == "torch"  # the kernel is fp32 / bf16 / fp16
    monkeypatch.setenv(kernels.ENV_CPU_BACKEND, "torch")
    assert kernels.resolve_backend("auto", x) == "torch"
    monkeypatch.setenv(kernels.ENV_CPU_BACKEND, "cpp")
    assert kernels.resolve_backend("auto", x.half()) == "cpp"
    monkeypatch.setenv(kernels.ENV_CPU_BACKEND, "fast")
    with pytest.raises(ValueError, match=kernels.ENV_CPU_BACKEND):
        kernels.resolve_backend("auto", x)


@pytest.fixture
def fresh_kernel_state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty build cache and a process that has not loaded (or failed to load) the library yet."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.delenv(kernels.ENV_BACKEND, raising=False)
    monkeypatch.delenv(kernels.ENV_CPU_BACKEND, raising=False)
    monkeypatch.setattr(cpu_dyt, "_lib", None)
    monkeypatch.setattr(cpu_dyt, "_error", None)
    return tmp_path


def _fail(*args, **kwargs):
    raise RuntimeError("Error building extension 'bsd_dyt_cpu': g++: command not found\nmore compiler output")


@pytest.mark.parametrize("stage", ["_compile", "_load"])
def test_failed_build_or_load_warns_once_and_falls_back(stage: str, fresh_kernel_state: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """No compiler (the build fails) or a library that does not load (e.g. built for another torch)."""
    if stage == "_load":
        monkeypatch.setattr(cpu_dyt, "_compile", lambda build: build / "stale.so")
    monkeypatch.setattr(cpu_dyt, stage, _fail)
    case = Case((5, 24), dtype=torch.bfloat16)
    x = torch.randn(case.shape).to(case.dtype)
    with pytest.warns(RuntimeWarning, match="C\\+\\+ DyT CPU kernel is unavailable") as caught:
        assert kernels.resolve_backend("auto", x) == "torch"
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once: later calls are silent
        testing.check(case, "auto", "cpu")
    assert (cpu_dyt.build_folder() / cpu_dyt.FAILED_LOG).exists()
    assert not (cpu_dyt.build_folder() / "ready").exists()  # so that a retry builds again
    with pytest.raises(cpu_dyt.KernelUnavailable):
        kernels.dyt(x, torch.ones(1), None, backend="cpp")


def test_a_recorded_failure_is_not_rebuilt_unless_forced(fresh_kernel_state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = cpu_dyt.build_folder()
    folder.mkdir(parents=True)
    (folder / cpu_dyt.FAILED_LOG).write_text("earlier failure")
    monkeypatch.setattr(cpu_dyt, "_compile", _fail)  # reached only when forced
    with pytest.warns(RuntimeWarning, match="an earlier build failed"):
        assert not cpu_dyt.available()
    monkeypatch.setattr(cpu_dyt, "_error", None)
    monkeypatch.setenv(kernels.ENV_CPU_BACKEND, "cpp")
    with pytest.raises(cpu_dyt.KernelUnavailable, match="g\\+\\+: command not found"):
        kernels.resolve_backend("auto", torch.randn(2, 3))


def test_cache_folder_is_keyed_by_torch_version(monkeypatch: pytest.MonkeyPatch) -> None:
    here = cpu_dyt.build_folder()
    monkeypatch.setattr(torch, "__version__", "2.11.0+cu130")
    other = cpu_dyt.build_folder()
    assert here != other and here.parent == other.parent and "2.11.0" in other.name


def _python(script: str, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_import_builds_nothing(tmp_path: Path) -> None:
    proc = _python("""
        import sys, torch
        from bio_speech_dyt import kernels
        from bio_speech_dyt.kernels import cpu_dyt
        assert "torch.utils.cpp_extension" not in sys.modules and not cpu_dyt.cache_root().exists()
    """, tmp_path / "cache")
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, output


@pytest.mark.slow  # two processes and a real compilation: ~30 s on 2 cores
def test_concurrent_first_builds_both_succeed(tmp_path: Path) -> None:
    """Two processes that build at once into an empty cache both get a working kernel (one compiles
    under the flock, the other waits and loads its build)."""
    script = """
        import torch
        from bio_speech_dyt import kernels
        x = torch.randn(64, 48)
        y = kernels.dyt(x, torch.full((1,), 0.7), torch.ones(48), None, backend="cpp")
        torch.testing.assert_close(y, torch.tanh(0.7 * x))
    """
    procs = [_python(script, tmp_path / "cache") for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert len(list((tmp_path / "cache" / "bio_speech_dyt").glob("*/ready"))) == 1
