"""An exclusive, non-blocking lock per folder (prepared data, run directories).

``fcntl.flock`` on a dotfile inside the folder (dotfiles are not outputs, so two prepared
folders stay comparable): held by an open file descriptor, it is released by the kernel when
the process dies, so a killed job never leaves a stale lock behind. The holder's pid is
written into the file for the error message only.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

LOCK_NAME = ".bsd.lock"


class LockedError(RuntimeError):
    """Another live process holds the folder's lock."""


@contextlib.contextmanager
def exclusive_lock(folder: Path, what: str = "folder") -> Iterator[Path]:
    """Hold ``folder/.bsd.lock`` for the duration of the block; raise :class:`LockedError`
    at once (no waiting) when another process holds it."""
    folder = Path(folder)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise LockedError(f"{folder}: this {what} is in use by another bsd process (pid {holder}); "
                              "wait for it to finish or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race a waiting locker)
