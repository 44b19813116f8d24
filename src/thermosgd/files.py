"""Reading the user's files safely: regular files only, and their fingerprints.

A FIFO, a device or a socket given where a file is expected would block a
reader forever (or feed it endless bytes): every input is opened without
blocking and checked to be a regular file before a byte is read.

:func:`fingerprint` is the one way a run records which input files it used
(``.npz`` data, IDX and CIFAR files, a study's factory module), so that a
resume or re-run on changed inputs is refused instead of mixing old and new.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import BinaryIO

from thermosgd.errors import UsageError

__all__ = ["changed_inputs", "file_sha256", "fingerprint", "open_regular", "read_regular"]


def open_regular(path: str | os.PathLike, what: str = "file") -> BinaryIO:
    """Open ``path`` for reading in binary mode; refuse anything but a regular file.

    The open itself never blocks (``O_NONBLOCK``: a FIFO without a writer would
    wait forever); symbolic links are followed, since the user named the file.

    Raises:
        UsageError: the path is missing, unreadable, or not a regular file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a pipe, device or socket)"
            raise UsageError(f"{what} {path} is {kind}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike, what: str = "file", limit: int | None = None) -> bytes:
    """The bytes of the regular file ``path`` (at most ``limit + 1`` are read, so callers can refuse more)."""
    with open_regular(path, what) as fh:
        try:
            return fh.read() if limit is None else fh.read(limit + 1)
        except OSError as exc:
            raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a regular file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open_regular(path) as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(paths) -> dict[str, str]:
    """``{absolute path: SHA-256}`` of each input file, in a stable order.

    Args:
        paths: input files (str or PathLike); duplicates count once.

    Returns:
        The mapping a run stores beside its configuration; compare two with
        :func:`changed_inputs`.
    """
    resolved = sorted({str(Path(os.path.expanduser(os.fspath(p))).resolve()) for p in paths})
    return {p: file_sha256(p) for p in resolved}


def changed_inputs(recorded: dict[str, str], now: dict[str, str]) -> str | None:
    """Why the inputs ``now`` are not those ``recorded`` (one clause), or None when they are."""
    for path in sorted(set(recorded) | set(now)):
        if path not in now:
            return f"input file {path} is no longer among this run's inputs"
        if path not in recorded:
            return f"input file {path} was not an input of the earlier run"
        if recorded[path] != now[path]:
            then, now_ = recorded[path][:12], now[path][:12]
            return f"input file {path} changed since the run started (SHA-256 {then}… then, {now_}… now)"
    return None
