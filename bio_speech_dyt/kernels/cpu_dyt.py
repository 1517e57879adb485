"""The ``cpp`` backend: fused DyT forward / backward for CPU tensors, in C++ (``csrc/dyt_cpu.cpp``).

Forward is one pass over ``x`` writing ``y``; backward one pass over ``(x, dy)`` writing ``dx``
and per-task fp32 partial sums of the three parameter gradients, added in a fixed order (bitwise
reproducible, whatever the thread count). ``tanh`` is a vectorised rational approximation
(<= 4e-7 absolute error). fp32 / bf16 / fp16 tensors, fp32 math, torch's intra-op threads.

Why a C++ library rather than ``torch.compile`` or more torch ops (``docs/cpu-kernel.md`` has the
numbers): torch ops pay a pass over memory per op and libm-accurate ``tanh``; Inductor's code
fuses the forward but calls Sleef's accurate ``tanh`` and splits the backward's reductions over
several kernels, and it costs seconds of compilation per shape in every process. The library is
one source file compiled once per machine and loaded in milliseconds.

Build: on the first call that needs it (never at import), ``torch.utils.cpp_extension`` compiles
the source (g++ and ninja, a few seconds) into a per-user cache: ``$TORCH_EXTENSIONS_DIR`` or
``$XDG_CACHE_HOME`` (default ``~/.cache``), under ``bio_speech_dyt/<key>``, the key naming the
torch version, C++ ABI, Python, machine and a hash of the source and flags, so another torch
builds its own copy and never loads this one. Builds are serialised by an ``flock`` on the key
folder (the kernel drops it if the builder dies, so a killed build never blocks the next one),
and a ``ready`` file is written, atomically, last: later processes find it and load the library
with ``ctypes`` alone. If anything fails, :func:`available` warns once, in one line, the
failure is kept in the key folder (``build-failed.log``, so later processes do not compile
again; delete it to retry), and ``auto`` falls back to the ``torch`` backend.
``BSD_DYT_CPU_BACKEND=cpp`` (see :mod:`bio_speech_dyt.kernels`) ignores that file and raises instead.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import platform
import sys
import tempfile
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Iterator

import torch
from torch import Tensor

from bio_speech_dyt.kernels.layout import layout_of

SOURCE = Path(__file__).parent / "csrc" / "dyt_cpu.cpp"
NAME = "bsd_dyt_cpu"
# -O3 for the vector code; -fopenmp compiles at::parallel_for's OpenMP region, whose runtime calls
# resolve to the libgomp torch already loaded (nothing else is linked, so there is one thread
# pool); contraction lets the AVX2 clone fuse multiply-adds.
CFLAGS = ("-O3", "-fopenmp", "-ffp-contract=fast", "-Wno-psabi")
DTYPE_CODES = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}
FAILED_LOG = "build-failed.log"
ENV_CPU_BACKEND = "BSD_DYT_CPU_BACKEND"  # cpp | torch: what ``auto`` runs on CPU (see bio_speech_dyt.kernels)

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_error: str | None = None  # why the library is unavailable in this process (warned once)


class KernelUnavailable(RuntimeError):
    """The C++ library could not be built or loaded."""


def cache_root() -> Path:
    """Where built libraries are kept: ``$TORCH_EXTENSIONS_DIR`` or ``~/.cache``, then ``bio_speech_dyt``."""
    base = os.environ.get("TORCH_EXTENSIONS_DIR") or os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bio_speech_dyt"


def build_folder() -> Path:
    """The cache folder of this torch / Python / machine / source combination."""
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), repr(CFLAGS).encode(), torch.__version__.encode(),
                 str(torch._C._GLIBCXX_USE_CXX11_ABI).encode(), sys.version.encode(), platform.machine().encode()):
        digest.update(part)
        digest.update(b"\0")
    return cache_root() / f"{NAME}-torch{torch.__version__}-{platform.machine()}-{digest.hexdigest()[:16]}"


def _write_atomic(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
        f.write(text)
    os.replace(f.name, path)


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    import fcntl

    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _compile(build: Path) -> Path:
    """Compile the source into ``build`` with ``torch.utils.cpp_extension``; the library's path."""
    # cpp_extension logs, at import, that a CUDA wheel found no CUDA runtime: irrelevant to a CPU build
    quiet = logging.getLogger("torch.utils.cpp_extension")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension
    finally:
        quiet.setLevel(level)
    path = cpp_extension.load(name=NAME, sources=[str(SOURCE)], extra_cflags=list(CFLAGS), build_directory=str(build),
                              is_python_module=False, verbose=False)
    return Path(path)


def _built_library(folder: Path) -> Path:
    """The library's path, compiling it first unless a finished build is in ``folder``."""
    ready = folder / "ready"
    if not ready.exists():
        folder.mkdir(parents=True, exist_ok=True)
        with _flock(folder / "build.lock"):
            if not ready.exists():  # not built by another process while this one waited
                build = folder / "build"
                build.mkdir(exist_ok=True)
                # torch's own lock file, left by a build that was killed: under the flock no one else builds
                (build / "lock").unlink(missing_ok=True)
                start = time.monotonic()
                path = _compile(build)
                _write_atomic(ready, f"{path.name}\ncompiled in {time.monotonic() - start:.1f} s\n")
    return folder / "build" / ready.read_text().split("\n", 1)[0]


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    c_int, c_i64, c_ptr = ctypes.c_int, ctypes.c_int64, ctypes.c_void_p
    lib.bsd_dyt_forward.argtypes = [c_int, c_ptr, c_ptr, c_i64, c_i64, c_i64, ctypes.c_float, c_ptr, c_ptr]
    lib.bsd_dyt_backward.argtypes = [c_int, c_ptr, c_ptr, c_ptr, c_i64, c_i64, c_i64, ctypes.c_float, c_ptr, c_ptr,
                                     c_ptr, c_ptr]
    lib.bsd_dyt_forward.restype = lib.bsd_dyt_backward.restype = c_int
    lib.bsd_dyt_last_error.argtypes, lib.bsd_dyt_last_error.restype = [], ctypes.c_char_p
    return lib


def library(retry_failed: bool = False) -> ctypes.CDLL:
    """The loaded library, built on first use; raises :class:`KernelUnavailable` if that fails.

    A failure is remembered for the process and in the build folder; ``retry_failed`` ignores the
    build folder's record (the process's own failure still stands).
    """
    global _lib, _error
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is None and _error is None:
            folder = build_folder()
            failed = folder / FAILED_LOG
            try:
                if failed.exists() and not retry_failed:
                    raise KernelUnavailable(f"an earlier build failed, see {failed} (delete it to retry)")
                _lib = _load(_built_library(folder))
            except Exception as exc:  # noqa: BLE001 - any failure (no compiler, bad ABI, ...) means the fallback
                summary = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"
                if not isinstance(exc, KernelUnavailable):
                    with contextlib.suppress(OSError):
                        folder.mkdir(parents=True, exist_ok=True)
                        _write_atomic(failed, "".join(traceback.format_exception(exc)))
                        (folder / "ready").unlink(missing_ok=True)  # a build that does not load: a retry rebuilds
                    summary += f" (log: {failed})"
                _error = summary
        if _lib is None:
            raise KernelUnavailable(_error)
        return _lib


@torch.compiler.assume_constant_result  # run, not traced, by torch.compile: a build is no graph op
def available() -> bool:
    """Whether the C++ kernel can run here, building it if needed; warns once, in one line, if not.

    With ``BSD_DYT_CPU_BACKEND=cpp`` a recorded build failure is retried, and a failure raises.
    """
    forced = os.environ.get(ENV_CPU_BACKEND) == "cpp"
    if _error is not None and not forced:
        return False
    try:
        library(retry_failed=forced)
        return True
    except KernelUnavailable as exc:
        if forced:
            raise
        warnings.warn(f"bio_speech_dyt: the C++ DyT CPU kernel is unavailable ({exc}); using the torch backend",
                      RuntimeWarning, stacklevel=2)
        return False


def _check(x: Tensor) -> int:
    if x.device.type != "cpu" or x.dtype not in DTYPE_CODES or not x.is_contiguous():
        raise ValueError(f"the cpp DyT backend takes contiguous CPU fp32 / bf16 / fp16 tensors; got {x.dtype} on {x.device}")
    return DTYPE_CODES[x.dtype]


def _fp32(p: Tensor | None) -> Tensor | None:
    return None if p is None else p.detach().to(torch.float32).contiguous()


def _pointer(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _call(fn, *args) -> None:
    if fn(*args) != 0:
        raise RuntimeError(f"DyT C++ kernel: {library().bsd_dyt_last_error().decode()}")


def forward(x: Tensor, alpha: Tensor, weight: Tensor | None, bias: Tensor | None, channels_last: bool,
            out: Tensor | None = None) -> Tensor:
    """``weight * tanh(alpha * x) + bias`` for a contiguous CPU ``x``, in ``x.dtype`` (into ``out`` if given:
    the benchmark times the kernel without the allocation)."""
    lib, code = library(), _check(x)
    y = torch.empty_like(x) if out is None else out
    w, b = _fp32(weight), _fp32(bias)  # held here: the kernel reads them through raw pointers
    _call(lib.bsd_dyt_forward, code, x.data_ptr(), y.data_ptr(), *layout_of(x, channels_last),
          float(alpha.detach()), _pointer(w), _pointer(b))
    return y


def backward(
    dy: Tensor, x: Tensor, alpha: Tensor, weight: Tensor | None, bias: Tensor | None, channels_last: bool,
    dx_out: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """``(dx, dalpha, dweight, dbias)`` for contiguous ``dy`` / ``x`` (``dx`` into ``dx_out`` if given);
    grads in the parameters' dtypes."""
    lib, code = library(), _check(x)
    if dy.dtype != x.dtype:
        dy = dy.to(x.dtype)
    layout = layout_of(x, channels_last)
    dx = torch.empty_like(x) if dx_out is None else dx_out
    fp32 = {"dtype": torch.float32}
    dalpha = torch.empty_like(alpha, **fp32)
    dweight = None if weight is None else torch.empty_like(weight, **fp32)
    dbias = None if bias is None else torch.empty_like(bias, **fp32)
    w = _fp32(weight)  # held here: the kernel reads it through a raw pointer
    _call(lib.bsd_dyt_backward, code, dy.data_ptr(), x.data_ptr(), dx.data_ptr(), *layout, float(alpha.detach()),
          _pointer(w), dalpha.data_ptr(), _pointer(dweight), _pointer(dbias))
    return (dx, dalpha.to(alpha.dtype), None if dweight is None else dweight.to(weight.dtype),
            None if dbias is None else dbias.to(bias.dtype))
