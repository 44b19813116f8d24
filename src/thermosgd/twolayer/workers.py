"""Worker processes that draw a chunk's sample streams beside a GPU.

Beside a GPU the CPU has one job: drawing the next chunk while the device steps.
A chunk is one short draw per stream from tens of thousands of streams (fig3 on
65 536 replicas: 16 384 streams of 2 560 numbers each), and each draw is a few
torch calls whose Python part holds the GIL. Threads in the training process
barely help there (measured on an H200 machine: 2.36 ms per step on one thread,
1.71 on eight), while the process that launches the GPU's kernels needs the GIL
too. Processes forked from the trainer own fixed ranges of streams instead: each
stream's generator (and, for "reshuffle", its epoch) lives in one worker from the
fork on, and is drawn by the same calls in the same order as in the trainer, so
the numbers are the same bits. They write into one shared anonymous mapping (not
``/dev/shm``, which containers often cap at 64 MiB).

Linux only (``fork``), and never inside a daemonic process (a Dask worker's
children are refused): :func:`available` says when.
"""

from __future__ import annotations

import mmap
import multiprocessing as mp
import signal
import sys
import warnings

import torch


def available() -> bool:
    """Whether worker processes can be forked here."""
    return sys.platform == "linux" and not mp.current_process().daemon


class StreamWorkers:
    """``processes`` forked workers that fill a chunk of ``streams`` on request.

    Args:
        streams: the :class:`~thermosgd.twolayer.data.SampleStream` objects, in chunk order;
            from here on only the workers may draw from them.
        per_stream: samples per stream and chunk (steps × batch).
        inputs: M. dtype: of the draws. processes: workers (≥ 1; at most one per stream).
    """

    def __init__(self, streams, per_stream: int, inputs: int, dtype: torch.dtype, processes: int):
        S, item = len(streams), torch.empty(0, dtype=dtype).element_size()
        self._map = mmap.mmap(-1, max(1, S * per_stream * (inputs + 1) * item))  # MAP_SHARED | MAP_ANONYMOUS
        self.x = torch.frombuffer(self._map, dtype=dtype, count=S * per_stream * inputs).view(S, per_stream, inputs)
        self.y = torch.frombuffer(
            self._map, dtype=dtype, count=S * per_stream, offset=S * per_stream * inputs * item
        ).view(S, per_stream)
        ctx = mp.get_context("fork")
        k = max(1, min(processes, S))
        self._conns, self._procs = [], []
        with warnings.catch_warnings():
            # Python ≥ 3.12 warns that forking a threaded process may deadlock the child; the child
            # here only draws on the CPU with torch's own generators, as DataLoader workers do.
            warnings.simplefilter("ignore", DeprecationWarning)
            for i in range(k):
                lo, hi = i * S // k, (i + 1) * S // k
                parent, child = ctx.Pipe()
                proc = ctx.Process(
                    target=_serve, args=(child, streams[lo:hi], self.x[lo:hi], self.y[lo:hi]), daemon=True
                )
                proc.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(proc)

    def fill(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw every stream's next chunk: views x (S, per_stream, M), y (S, per_stream) of the shared
        buffer, valid until the next call."""
        for c in self._conns:
            c.send(True)
        errors = []
        for c in self._conns:
            try:
                err = c.recv()
            except EOFError:
                err = "a drawing process ended unexpectedly"
            if err is not None:
                errors.append(err)
        if errors:
            self.close()
            raise RuntimeError(f"drawing samples failed: {errors[0]}")
        return self.x, self.y

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        for c in self._conns:
            try:
                c.send(None)
                c.close()
            except (BrokenPipeError, OSError):
                pass
        for p in self._procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
        self._conns, self._procs = [], []


def _serve(conn, streams, x: torch.Tensor, y: torch.Tensor) -> None:
    """A worker's loop: on each request draw every owned stream's next chunk into its rows."""
    torch.set_num_threads(1)  # one core per worker; a stream's draw is one serial torch call anyway
    # Ctrl-C reaches the whole process group: the trainer handles it and stops the workers, which
    # would otherwise each print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            msg = conn.recv()
        except EOFError:  # the trainer is gone
            return
        if msg is None:
            return
        try:
            for i, st in enumerate(streams):
                st.batches_into(x[i], y[i])
            conn.send(None)
        except Exception as e:  # reported to the trainer, which raises it
            conn.send(f"{type(e).__name__}: {e}")
