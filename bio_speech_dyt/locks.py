"""An exclusive, non-blocking lock per folder (prepared data, run directories).

``fcntl.flock`` on the dotfile ``.bsd.lock`` inside the folder (dotfiles are not outputs, so two
prepared folders stay comparable): held by an open file descriptor, it is released by the
kernel when the process dies, so a killed job never leaves a stale lock. The holder writes its
pid into the file for the error message, and removes the file on release while still holding
it; a waiter that opened the old file notices (another inode) and retries on a fresh one.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from typing import Iterator

LOCK_NAME = ".bsd.lock"


class LockedError(FileExistsError):
    """Another live process holds the folder's lock."""


def _pid_in(fd: int) -> str:
    for _ in range(20):  # the holder writes its pid right after taking the lock
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text:
            return text
        time.sleep(0.01)
    return "unknown"


def _acquire(path: Path, busy: str) -> int:
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise type(e)(e.errno, f"cannot write in --out folder {path.parent}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _pid_in(fd)
            os.close(fd)
            raise LockedError(busy.format(pid=pid)) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a lock file its previous holder removed after we opened it
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)


@contextlib.contextmanager
def exclusive_lock(folder: Path, busy: str | None = None) -> Iterator[Path]:
    """Hold ``folder/.bsd.lock`` for the block; :class:`LockedError` at once (no waiting), with
    ``busy`` (``{pid}`` is filled in) as its message, when another process holds it."""
    folder = Path(folder)
    path = folder / LOCK_NAME
    message = busy or (f"{folder}: in use by another bsd process (pid {{pid}}); "
                       "wait for it to finish or choose another --out")
    fd = _acquire(path, message)
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)
