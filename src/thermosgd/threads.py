"""One intra-op thread for small per-step work, shared by the two-layer engine and the deep ensembles."""

from __future__ import annotations

import contextlib

import torch

#: Multiply-adds per step below which splitting ops over threads costs more than it saves.
SMALL_WORK = 4_000_000


@contextlib.contextmanager
def threads_for(work: int):
    """Use one torch intra-op thread while ``work`` (multiply-adds per step) is small.

    Thread start-up then costs more than the arithmetic, and on a busy machine many
    times more (fig2-middle's ensemble ran 6× slower with 2 threads on a loaded 2-core
    machine). The previous thread count is restored on exit.
    """
    old = torch.get_num_threads()
    if work < SMALL_WORK and old > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)
