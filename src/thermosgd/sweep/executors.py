"""Where work units run: one ``concurrent.futures.Executor`` interface.

- ``auto`` (the CLI's default): ``processes`` on every core when the sweep has
  several units and enough work for that to pay, else ``inline`` (decided by
  ``thermosgd.sweep.run.plan_sweep``).
- ``inline`` (the Python default): in this process, one unit after another.
- ``processes``: local worker processes (``ProcessPoolExecutor``).
- Dask distributed: ``workers=N`` starts a local Dask cluster, ``scheduler=
  "tcp://HOST:PORT"`` connects to a running one. A Dask ``Client`` exposes the
  ``concurrent.futures.Executor`` API through ``client.get_executor()``.

Whatever the executor, a unit's results are the same bits (see ``units``); the
executor only decides where and when it runs.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor

from thermosgd.errors import UsageError

KINDS = ("auto", "inline", "processes", "dask")
CONNECT_TIMEOUT = "10s"  # waiting for a remote Dask scheduler
WORKER_TIMEOUT = 60  # seconds to wait for a scheduler's first worker
PROBE_TIMEOUT = 5.0  # seconds for the plain TCP check of a scheduler address
_ADDRESS = re.compile(
    r"(?:(?P<scheme>tcp|tls|ws|wss)://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})/?"
)


class InlineExecutor(Executor):
    """Runs each submitted call at once, in this process."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - delivered through the future
            fut.set_exception(exc)
        return fut


def resolve_kind(kind: str | None = "inline", *, workers: int | None = None, scheduler: str | None = None) -> str:
    """Check the executor arguments before anything runs; returns the kind used."""
    # The one place where the rules live: --workers alone means a local Dask
    # cluster, --scheduler means Dask, and neither means units run in this process
    # (in Python; the CLI passes "auto": worker processes on every core when that
    # pays, decided by the sweep's plan). Worker processes re-import a Python
    # script's main module, which must then guard its work with
    # `if __name__ == "__main__":`, so Python code asks for them explicitly.
    if kind is None:
        kind = "inline"
    if kind not in KINDS:
        raise UsageError(f"unknown executor {kind!r}; allowed: {', '.join(KINDS)}")
    if kind in ("auto", "inline") and workers is not None and not scheduler:
        kind = "dask"
    if workers is not None and workers < 1:
        raise UsageError(f"workers must be at least 1, got {workers}", param="workers")
    if scheduler:
        if kind == "processes":
            raise UsageError(
                "a scheduler runs units on Dask; it cannot be combined with the processes executor", param="scheduler"
            )
        if workers is not None:
            raise UsageError(
                "workers start a local cluster; with a scheduler the cluster's own workers are used", param="workers"
            )
        return "dask"
    return kind


def check_scheduler(scheduler: str | None) -> None:
    """Refuse a malformed or unreachable Dask scheduler address at once, in one line.

    Only ``[tcp|tls|ws|wss://]HOST:PORT`` (or ``inproc://...``) is accepted; a TCP
    connection to it must open, and a Dask scheduler must answer there (an
    ``identity`` request), each within ``PROBE_TIMEOUT``. Checking before a Dask
    ``Client`` is made matters: a ``Client`` whose connection fails lingers
    half-built, and its destructor blocks for 20 s and prints a traceback.
    """
    if not scheduler:
        return
    if isinstance(scheduler, str) and scheduler.startswith("inproc://"):
        return  # a scheduler inside this process (tests, notebooks): nothing to probe
    m = _ADDRESS.fullmatch(scheduler.strip()) if isinstance(scheduler, str) else None
    if m is None or not 0 < int(m["port"]) < 65536:
        raise UsageError(f"cannot reach Dask scheduler {scheduler}: not an address of the form tcp://HOST:PORT")
    try:  # fast for a closed port or an unknown host
        socket.create_connection((m["host"].strip("[]"), int(m["port"])), timeout=PROBE_TIMEOUT).close()
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
        raise UsageError(f"cannot reach Dask scheduler {scheduler}: {why}") from None
    address = scheduler.strip() if m["scheme"] else f"tcp://{scheduler.strip()}"
    # In a thread of its own: asyncio.run needs a thread without a running event loop (Jupyter has one).
    with ThreadPoolExecutor(1) as pool:
        reply = pool.submit(_identity, address).result()
    if not (isinstance(reply, dict) and reply.get("type") == "Scheduler"):
        why = reply if isinstance(reply, str) else "something else answers there"
        raise UsageError(f"cannot reach Dask scheduler {scheduler}: no Dask scheduler answers ({why})")


def _identity(address: str):
    """The scheduler's answer to ``identity``, or a one-line reason why there is none."""
    import asyncio

    from distributed.comm import connect

    async def ask():
        comm = await connect(address, timeout=PROBE_TIMEOUT)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await asyncio.wait_for(comm.read(), PROBE_TIMEOUT)
        finally:
            comm.abort()

    try:  # one bound for everything: a server that accepts and stays silent must not hang us
        return asyncio.run(asyncio.wait_for(ask(), 2 * PROBE_TIMEOUT))
    except Exception as exc:  # noqa: BLE001 - whatever a foreign server provokes (even MemoryError)
        first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else "no answer in time"
        return f"{type(exc).__name__}: {first}"


def _exit_with(parent: int, inherited: tuple[int, ...] = ()) -> None:
    """Worker-process initializer: exit once the sweep process is gone.

    After ``kill -9`` of the sweep, pool workers would otherwise finish their
    unit for nothing and then wait forever on their task queue. A forked worker
    also closes the file descriptors it inherited in ``inherited`` (the folder
    lock): an ``flock`` lasts while any descriptor of its open file is open, so
    a killed sweep's folder is free again at once, not when its workers notice.
    """
    for fd in inherited:
        try:
            os.close(fd)
        except OSError:
            pass

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # pragma: no cover - pid reused by another user
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def _process_context():
    """fork when this process has no other thread (workers start in milliseconds, with
    torch already imported), else a forkserver that imports the engine once (~2 s).

    Forking a process with threads can deadlock the child, and with torch's threads
    started it would copy their state: a unit pins one intra-op thread
    (``units._one_thread``), which PyTorch's own fork-based DataLoader workers rely on too.
    """
    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["thermosgd.twolayer.engine"])
    return ctx


@contextlib.contextmanager
def _shutdown_on_exit(ex: Executor) -> Iterator[Executor]:
    """Yield ``ex``; on an error or Ctrl-C, drop the units not yet started."""
    try:
        yield ex
    except BaseException:
        ex.shutdown(wait=True, cancel_futures=True)
        raise
    ex.shutdown(wait=True)


@contextlib.contextmanager
def open_executor(
    kind: str = "inline", *, workers: int | None = None, scheduler: str | None = None, inherited: tuple[int, ...] = ()
) -> Iterator[Executor]:
    """Context manager yielding an Executor.

    Args:
        kind: "inline", "processes" or "dask" ("auto" is resolved by the sweep's
            plan; here it means inline).
        workers: worker count for "processes" (default: CPU count) or a local
            Dask cluster (default 2).
        scheduler: address of a running Dask scheduler, ``tcp://HOST:PORT``
            (implies "dask").
        inherited: file descriptors a forked worker process closes first (the
            folder lock).

    Raises:
        UsageError: bad arguments or an unreachable scheduler.
    """
    kind = resolve_kind(kind, workers=workers, scheduler=scheduler)
    if kind in ("inline", "auto"):
        yield InlineExecutor()
    elif kind == "processes":
        ctx = _process_context()
        ex = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=ctx,
            initializer=_exit_with,
            initargs=(os.getpid(), tuple(inherited) if ctx.get_start_method() == "fork" else ()),
        )
        with _shutdown_on_exit(ex):
            yield ex
    else:
        from distributed import Client, LocalCluster

        # set_as_default=False: the client serves only as our executor. As the
        # default it would route every dask computation of this process through
        # the cluster (xarray's NetCDF writes included), and a failed connection
        # would leave that default behind, broken.
        if scheduler:
            check_scheduler(scheduler)
            try:
                client = Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
            except (OSError, ValueError, TypeError) as exc:
                raise UsageError(f"cannot reach Dask scheduler {scheduler}: {exc}") from None
            with client:
                try:  # a scheduler without workers would leave every unit queued forever
                    client.wait_for_workers(1, timeout=WORKER_TIMEOUT)
                except (TimeoutError, OSError) as exc:
                    raise UsageError(
                        f"Dask scheduler {scheduler} has no workers (none joined within {WORKER_TIMEOUT} s): {exc}"
                    ) from None
                ex = client.get_executor()
                try:
                    yield ex
                except BaseException:
                    ex.shutdown(wait=False)  # cancels what is still queued on the cluster
                    raise
        else:
            with (
                LocalCluster(
                    n_workers=workers or 2,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=40,
                ) as cluster,
                Client(cluster, set_as_default=False) as client,
            ):
                yield client.get_executor()
