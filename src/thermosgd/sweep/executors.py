"""Where work units run: one ``concurrent.futures.Executor`` interface.

- ``inline`` (default): in this process, one unit after another.
- ``processes``: local worker processes (``ProcessPoolExecutor``).
- Dask distributed: ``workers=N`` starts a local Dask cluster, ``scheduler=
  "tcp://HOST:PORT"`` connects to a running one. A Dask ``Client`` exposes the
  ``concurrent.futures.Executor`` API through ``client.get_executor()``.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Iterator

from thermosgd.errors import UsageError


class InlineExecutor(Executor):
    """Runs each submitted call at once, in this process."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - delivered through the future
            if isinstance(exc, KeyboardInterrupt):
                raise
            fut.set_exception(exc)
        return fut


@contextlib.contextmanager
def open_executor(kind: str = "inline", *, workers: int | None = None, scheduler: str | None = None) -> Iterator[Executor]:
    """Context manager yielding an Executor.

    Args:
        kind: "inline", "processes" or "dask".
        workers: worker count for "processes" / a local Dask cluster.
        scheduler: address of a running Dask scheduler (implies "dask").
    """
    if scheduler:
        kind = "dask"
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    if kind == "inline":
        yield InlineExecutor()
    elif kind == "processes":
        with ProcessPoolExecutor(max_workers=workers) as ex:
            yield ex
    elif kind == "dask":
        from distributed import Client, LocalCluster

        if scheduler:
            try:
                client = Client(scheduler, timeout="10s")
            except OSError as exc:
                raise UsageError(f"cannot reach Dask scheduler {scheduler}: {exc}") from None
            with client:
                yield client.get_executor()
        else:
            with LocalCluster(
                n_workers=workers or 2, threads_per_worker=1, processes=True,
                dashboard_address=None, silence_logs=40,
            ) as cluster, Client(cluster) as client:
                yield client.get_executor()
    else:
        raise UsageError(f"unknown executor {kind!r}; allowed: inline, processes, dask")
