"""The torch reference's steps replayed as CUDA graphs on a GPU.

On a GPU one two-layer step is some 25 small kernels. For small nets (fig3's 10×10 on
65 536 replicas) each runs for microseconds and the Python that launches it costs more:
measured on an H200, the loop took 0.75 ms per step with its draws made free, most of
it launching. A CUDA graph launches a captured sequence of steps with one call.

Graphs are captured, once each, for runs of 1, 2, 4, … steps (at most log₂ of the chunk
plus one of them), each reading fixed windows of the chunk's samples; a run of n steps
is replayed as the binary decomposition of n, each part's samples copied into the
windows first. A graph replays the very kernels of the eager step on the same
parameter tensors, updated in place (freezing a replica writes into those tensors too),
so the arithmetic is the eager step's.

If capturing fails (a torch or driver without graph support for an op), the backend
says so once on stderr and steps eagerly: the same numbers, more slowly.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Protocol

import torch


class Replayable(Protocol):
    def replay(self) -> None: ...


Capture = Callable[[Callable[[], None]], Replayable]

_said_fallback = False


def capture_for(device: torch.device) -> Capture | None:
    """How to capture steps on ``device``: CUDA graphs on a CUDA device, else None (step eagerly)."""
    return _cuda_capture if device.type == "cuda" else None


def _cuda_capture(fn: Callable[[], None]) -> Replayable:
    """``fn``'s kernels as one CUDA graph (recorded, not run). Only this thread's work is captured:
    the drawing thread works on the CPU meanwhile."""
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, capture_error_mode="thread_local"):
        fn()
    return g


class StepGraphs:
    """Runs of steps as captured graphs.

    Args:
        step: ``step(x, y, z)`` advances every replica by one step on one step's samples
            (z None when the noise model draws none), in place.
        chunk: the most steps per chunk (the windows hold the largest power of two below it).
        capture: records a function's work into something with ``replay()``.
    """

    def __init__(self, step: Callable[..., None], chunk: int, capture: Capture):
        self.step, self.capture = step, capture
        self.longest = 1 << (max(1, chunk).bit_length() - 1)
        self.windows: list[torch.Tensor | None] | None = None
        self.graphs: dict[int, Replayable] = {}

    def run(self, chunk: Sequence[torch.Tensor | None], c0: int, n: int) -> None:
        """Steps ``c0 .. c0 + n`` of ``chunk`` (its tensors indexed by step first). Every graph it needs
        is captured before any is replayed, so a failed capture leaves the parameters untouched."""
        if self.windows is None:
            self.windows = [
                None if v is None else torch.empty((self.longest, *v.shape[1:]), dtype=v.dtype, device=v.device)
                for v in chunk
            ]
        parts, left = [], n
        while left:
            size = min(self.longest, 1 << (left.bit_length() - 1))
            parts.append(size)
            left -= size
        for size in parts:
            if size not in self.graphs:
                self.graphs[size] = self.capture(self._steps(size))
        start = c0
        for size in parts:
            for w, v in zip(self.windows, chunk):
                if w is not None and v is not None:
                    w[:size].copy_(v[start : start + size])
            self.graphs[size].replay()
            start += size

    def _steps(self, size: int) -> Callable[[], None]:
        windows = self.windows
        assert windows is not None

        def steps() -> None:
            for c in range(size):
                self.step(*(None if w is None else w[c] for w in windows))

        return steps


def say_fallback(err: BaseException) -> None:
    """Say once per process that graphs could not be captured and steps run eagerly."""
    global _said_fallback
    if not _said_fallback:
        _said_fallback = True
        print(
            f"thermosgd: CUDA graphs could not be captured ({type(err).__name__}: {err}); "
            "stepping eagerly instead (the same numbers, more slowly)",
            file=sys.stderr,
        )
