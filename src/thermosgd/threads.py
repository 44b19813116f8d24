"""Threads for small per-step work: one intra-op thread where it is faster, and OpenMP threads that sleep
when they wait (shared by the two-layer engine, the deep ensembles and the CLI)."""

from __future__ import annotations

import contextlib
import os

#: Multiply-adds per step below which splitting ops over threads costs more than it saves.
SMALL_WORK = 4_000_000


def passive_waits() -> None:
    """Let torch's OpenMP threads sleep as soon as they wait (``OMP_WAIT_POLICY=PASSIVE``) unless the
    environment already says otherwise; must run before torch is first imported (libgomp reads it then).

    By default libgomp's threads spin after every parallel region. When another job holds
    one of the cores, a spinning thread takes time slices the thread it waits for needs, and
    every small op waits about a scheduler tick: the default command's drift section took 267 s
    instead of 20 s while another job used one of 2 cores. Measured on that section at 200 steps
    (2 cores, one held by a busy loop): 34.9 s spinning, 9.4 s passive, 16.5 s on one thread;
    on quiet cores 18.4 s spinning, 7.7 s passive.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@contextlib.contextmanager
def threads_for(work: int):
    """Use one torch intra-op thread while ``work`` (multiply-adds per step) is small.

    Thread start-up then costs more than the arithmetic, and on a busy machine many
    times more (fig2-middle's ensemble ran 6× slower with 2 threads on a loaded 2-core
    machine). The previous thread count is restored on exit.
    """
    import torch

    old = torch.get_num_threads()
    if work < SMALL_WORK and old > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)
