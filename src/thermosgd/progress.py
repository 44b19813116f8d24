"""Progress display that suits where the output goes.

On a terminal (or in a Jupyter kernel) this is a tqdm bar that erases itself.
When stderr is a file or a pipe (CI, logs, ``2> log.txt``) a bar would leave
carriage-return residue in the log, so there is none: a bar created with
``lines=True`` (coarse work, e.g. sweep work units) writes one plain line per
update, any other bar (per SGD step) writes nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["bar", "interactive", "no_bars"]

_NO_BARS: ContextVar[bool] = ContextVar("thermosgd_no_bars", default=False)


@contextmanager
def no_bars() -> Iterator[None]:
    """Within this block every bar is silent; printed results (verdict lines, tables) are not affected.

    ``reproduce --no-progress`` drops the bars only: its verdicts and closing table still print.
    """
    token = _NO_BARS.set(True)
    try:
        yield
    finally:
        _NO_BARS.reset(token)


def interactive(stream=None) -> bool:
    """Whether ``stream`` (default ``sys.stderr``) shows a live bar: a terminal or a Jupyter kernel."""
    stream = sys.stderr if stream is None else stream
    if type(stream).__module__.startswith("ipykernel"):
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or unusual stream
        return False


def bar(
    total: int,
    *,
    desc: str = "",
    unit: str = "it",
    enabled: bool = True,
    initial: int = 0,
    lines: bool = False,
    stream=None,
):
    """A progress counter with ``update(n)``, ``close()`` and use as a context manager.

    Args:
        total: expected number of updates.
        desc: label in front of the count.
        unit: what one update counts, e.g. ``"step"`` or ``"unit"``.
        enabled: False gives a counter that shows nothing.
        initial: updates already done (a resumed sweep).
        lines: without a terminal, write one line per update (else nothing).
        stream: where to write (default ``sys.stderr``).

    Returns:
        A tqdm bar on a terminal, else a line writer or a silent counter.
    """
    stream = sys.stderr if stream is None else stream
    if not enabled or _NO_BARS.get():
        return _Silent(total, initial)
    if interactive(stream):
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=False, file=stream)
    if lines:
        return _Lines(total, initial, desc, unit, stream)
    return _Silent(total, initial)


class _Silent:
    """Counts updates and shows nothing."""

    def __init__(self, total: int, initial: int = 0):
        self.total, self.n = total, initial

    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Lines(_Silent):
    """One line per update: ``units: 3/8 unit (12 s)``."""

    def __init__(self, total: int, initial: int, desc: str, unit: str, stream):
        super().__init__(total, initial)
        self.desc, self.unit, self.stream = desc, unit, stream
        self.start = time.perf_counter()

    def update(self, n: int = 1) -> None:
        super().update(n)
        label = f"{self.desc}: " if self.desc else ""
        elapsed = time.perf_counter() - self.start
        print(f"{label}{self.n}/{self.total} {self.unit} ({elapsed:.0f} s)", file=self.stream, flush=True)
