"""Schedules: callables ``step -> bool`` that decide when instruments run.

Step ``s`` means "after ``s`` SGD updates" (step 0 = at initialization).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from thermosgd.errors import UsageError


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
        if self.k < 1 or self.start < 0:
            raise UsageError(f"Every: need k >= 1 and start >= 0, got k={self.k}, start={self.start}")

    def __call__(self, step: int) -> bool:
        return step == self.last or (step >= self.start and (step - self.start) % self.k == 0)

    def steps(self, max_step: int) -> list[int]:
        """The recorded steps in ``0..max_step``."""
        return [s for s in range(max_step + 1) if self(s)]


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
        if self.max_step < 0 or self.points < 1:
            raise UsageError(f"LogSpaced: need max_step >= 0 and points >= 1, got {self.max_step}, {self.points}")

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
