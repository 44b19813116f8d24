"""The lock of a results folder: one writer at a time, released by the OS if it dies.

``DIR/.lock`` is ``flock``'ed by the process writing to DIR and holds its pid.
It is opened without following links and only when it is a plain file, so a
planted link never makes a sweep write its pid into another file.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from thermosgd.errors import UsageError
from thermosgd.sweep.store import LOCK_FILE, read_meta

__all__ = ["LOCK_FILE", "folder_lock", "lock_holder"]

_LOCK_PATIENCE = 0.5  # seconds a sweep waits for the lock (``status`` holds it for microseconds)


@contextmanager
def folder_lock(out: Path) -> Iterator[int]:
    """Exclusive lock on a results folder; released by the OS if the process dies.

    Yields the lock file's descriptor (forked worker processes close their copy).

    A lock file left behind by a killed process does not block: ``flock`` locks
    belong to open files, and the kernel drops them with the process.
    """
    out = Path(out)
    fh = _open_lock(out)
    if not _try_flock(fh, fcntl.LOCK_EX, patience=_LOCK_PATIENCE):
        fh.close()
        pid = _lock_pid(out)
        raise UsageError(
            f"another thermosgd process{f' (pid {pid})' if pid else ''} is writing to {out}; "
            "wait for it or choose another output folder",
            param="out",
        )
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield fh.fileno()
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def _open_lock(out: Path):
    """Open (or create) ``out/.lock`` without following a link; refuse anything but a plain file.

    A ``.lock`` that is a symbolic link, a hard link to another file, a FIFO or
    a device is refused: writing our pid into it would change a file elsewhere.
    """
    path = out / LOCK_FILE
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UsageError(f"{path} is a symbolic link; thermosgd never writes through links (remove it)") from None
        raise UsageError(f"cannot write to output folder {out}: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise UsageError(
            f"{path} is not a plain file of ours (a link, pipe or device); remove it or choose a new output folder",
            param="out",
        )
    os.set_blocking(fd, True)
    return os.fdopen(fd, "r+")


def _try_flock(fh, mode: int, patience: float = 0.0) -> bool:
    """Take ``mode`` on ``fh`` without blocking; retry for ``patience`` seconds."""
    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(fh, mode | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _lock_pid(out: Path) -> int | None:
    try:
        return int(read_meta(out / LOCK_FILE, 64).split()[0])
    except (OSError, UsageError, ValueError, IndexError):
        return None


def lock_holder(out: str | os.PathLike) -> int | None:
    """Pid of the process writing to ``out`` (0 if unknown), or None when nobody holds the lock."""
    path = Path(out) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    fh = os.fdopen(fd, "r")
    with fh:
        # A shared lock is granted unless a sweep holds the exclusive one. It is
        # dropped at once; a sweep starting meanwhile waits _LOCK_PATIENCE for it.
        if not _try_flock(fh, fcntl.LOCK_SH):
            return _lock_pid(Path(out)) or 0
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None
