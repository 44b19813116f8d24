"""Schedules: callables ``step -> bool`` that decide when instruments run.

Step ``s`` means "after ``s`` SGD updates" (step 0 = at initialization).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from thermosgd.errors import UsageError

#: More log-spaced points than this is no schedule (and would take minutes to lay out).
MAX_POINTS = 100_000


def _whole(value, what: str, minimum: int) -> int:
    """``value`` as an int >= ``minimum``; a float (2.5, nan, even 2.0), a bool or a string is refused.

    A float step would be rounded silently (1.2 and 1.7 would both become step 1).
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise UsageError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Every:
    """Every ``k`` steps from ``start`` on (``start``, ``start + k``, ...), and the last step.

    Attributes:
        k: period in SGD steps (>= 1).
        start: first recorded step.
        last: a step recorded in any case (e.g. the final one), or ``None``.
    """

    k: int
    start: int = 0
    last: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "k", _whole(self.k, "every: the period k", 1))
        object.__setattr__(self, "start", _whole(self.start, "every: start", 0))
        if self.last is not None:
            object.__setattr__(self, "last", _whole(self.last, "every: last", 0))

    def __call__(self, step: int) -> bool:
        return step == self.last or (step >= self.start and (step - self.start) % self.k == 0)

    def steps(self, max_step: int) -> list[int]:
        """The recorded steps in ``0..max_step`` (laid out arithmetically: no loop over every step)."""
        found = set(range(self.start, max_step + 1, self.k))
        if self.last is not None and self.last <= max_step:
            found.add(self.last)
        return sorted(found)


@dataclass(frozen=True)
class LogSpaced:
    """About ``points`` steps spaced evenly in log(step) over ``1..max_step``, plus step 0.

    Attributes:
        max_step: last step (always recorded).
        points: number of log-spaced steps (duplicates after rounding are merged, so
            fewer may result for small ``max_step``).
    """

    max_step: int
    points: int = 30

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_step", _whole(self.max_step, "log_spaced: max_step", 0))
        object.__setattr__(self, "points", _whole(self.points, "log_spaced: points", 1))
        if self.points > MAX_POINTS:
            raise UsageError(f"log_spaced: points must be at most {MAX_POINTS}, got {self.points}")

    @cached_property
    def _steps(self) -> frozenset[int]:
        if self.max_step == 0:
            return frozenset({0})
        grid = np.unique(np.rint(np.geomspace(1, self.max_step, self.points)).astype(int))
        return frozenset({0, *grid.tolist(), self.max_step})

    def __call__(self, step: int) -> bool:
        return step in self._steps

    def steps(self, max_step: int | None = None) -> list[int]:
        """The recorded steps in ``0..max_step`` (default: this schedule's ``max_step``)."""
        top = self.max_step if max_step is None else max_step
        return sorted(s for s in self._steps if s <= top)


def every(k: int, *, start: int = 0, last: int | None = None) -> Every:
    """Schedule firing every ``k`` steps (see :class:`Every`)."""
    return Every(k, start, last)


def log_spaced(max_step: int, points: int = 30) -> LogSpaced:
    """Schedule firing at about ``points`` log-spaced steps up to ``max_step`` and at 0."""
    return LogSpaced(max_step, points)
