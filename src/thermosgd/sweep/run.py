"""Run a sweep into a results folder: lock, plan units, run the missing ones, merge.

Re-running the same command on the same folder after any interruption
(Ctrl-C, ``kill -9``, a lost Dask worker) finishes only the missing or corrupt
units; the merged ``results.nc`` is bit-identical to an uninterrupted run.

Layout of a sweep folder (see also ``store``)::

    DIR/
      .lock           flock'ed by the process writing to DIR (holds its pid)
      config.json     the configuration; another config is refused
      units/          unit-00000.nc + unit-00000.nc.sha256, ... (see ``units``)
      results.nc      all units merged along ``seed``, written last, with its
                      checksum file results.nc.sha256 (see ``store``)

A sweep writes only into a new or empty folder or one holding its own earlier
run (see :func:`thermosgd.sweep.store.check_output_folder`).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from thermosgd.checks import require_config, torch_device
from thermosgd.config import SweepConfig
from thermosgd.errors import UsageError
from thermosgd.progress import bar as progress_bar
from thermosgd.sweep.executors import check_scheduler, open_executor, resolve_kind
from thermosgd.sweep.store import (
    CONFIG_FILE,
    RESULTS_FILE,
    check_inputs,
    check_output_folder,
    read_meta,
    results_problem,
    save_results,
    stale_temporaries,
    write_config,
)
from thermosgd.sweep.units import (
    CORRUPT,
    DONE,
    MISSING,
    Unit,
    call_seeds,
    compute_unit,
    plan_units,
    read_unit,
    unit_state,
    write_unit,
)
from thermosgd.twolayer import budget

LOCK_FILE = ".lock"
_LOCK_PATIENCE = 0.5  # seconds a sweep waits for the lock (``status`` holds it for microseconds)


@contextmanager
def folder_lock(out: Path) -> Iterator[int]:
    """Exclusive lock on a results folder; released by the OS if the process dies.

    Yields the lock file's descriptor (forked worker processes close their copy).

    A lock file left behind by a killed process does not block: ``flock`` locks
    belong to open files, and the kernel drops them with the process.
    """
    out = Path(out)
    fh = _open_lock(out)
    if not _try_flock(fh, fcntl.LOCK_EX, patience=_LOCK_PATIENCE):
        fh.close()
        pid = _lock_pid(out)
        raise UsageError(
            f"another thermosgd process{f' (pid {pid})' if pid else ''} is writing to {out}; "
            "wait for it or choose another --out"
        )
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield fh.fileno()
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def _open_lock(out: Path):
    """Open (or create) ``out/.lock`` without following a link; refuse anything but a plain file.

    A ``.lock`` that is a symbolic link, a hard link to another file, a FIFO or
    a device is refused: writing our pid into it would change a file elsewhere.
    """
    path = out / LOCK_FILE
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UsageError(f"{path} is a symbolic link; thermosgd never writes through links (remove it)") from None
        raise UsageError(f"cannot write to output folder {out}: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise UsageError(
            f"{path} is not a plain file of ours (a link, pipe or device); remove it or choose a new --out"
        )
    os.set_blocking(fd, True)
    return os.fdopen(fd, "r+")


def _try_flock(fh, mode: int, patience: float = 0.0) -> bool:
    """Take ``mode`` on ``fh`` without blocking; retry for ``patience`` seconds."""
    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(fh, mode | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _lock_pid(out: Path) -> int | None:
    try:
        return int(read_meta(out / LOCK_FILE, 64).split()[0])
    except (OSError, UsageError, ValueError, IndexError):
        return None


def lock_holder(out: str | os.PathLike) -> int | None:
    """Pid of the process writing to ``out`` (0 if unknown), or None when nobody holds the lock."""
    path = Path(out) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    fh = os.fdopen(fd, "r")
    with fh:
        # A shared lock is granted unless a sweep holds the exclusive one. It is
        # dropped at once; a sweep starting meanwhile waits _LOCK_PATIENCE for it.
        if not _try_flock(fh, fcntl.LOCK_SH):
            return _lock_pid(Path(out)) or 0
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


def _first_difference(a: dict, b: dict, prefix: str = "") -> str:
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            diff = _first_difference(va, vb, f"{prefix}[{key}] ")
            if diff:
                return diff
        elif va != vb:
            return f"{prefix}{key}: {va!r} there, {vb!r} now"
    return ""


def _read_config(path: Path) -> dict:
    try:
        raw = json.loads(read_meta(path))
    except (OSError, UsageError, ValueError, RecursionError):
        raise UsageError(f"{path} is unreadable; choose a new --out folder") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path} is not a sweep configuration; choose a new --out folder")
    return raw


def check_config(out: Path, cfg: SweepConfig) -> None:
    """Refuse a folder that holds results of another configuration."""
    path = Path(out) / CONFIG_FILE
    if not path.exists():
        return
    old = _read_config(path)
    new = json.loads(json.dumps(cfg.to_dict()))
    if old != new:
        raise UsageError(
            f"{out} holds results of a different config ({_first_difference(old, new)}); choose a new --out folder"
        )


@dataclass(frozen=True)
class SweepStatus:
    """How far a sweep folder has got.

    Attributes:
        units: units in the plan; done + missing + corrupt == units.
        done: units whose file and checksum are in place.
        missing: units never written.
        corrupt: unit files that fail their checksum (or lack one): recomputed
            on the next run.
        replicas: replicas (lr × batch size × seed) in the done units.
        diverged: of those, replicas that diverged (recorded, then frozen).
        merged: ``results.nc`` exists.
        running: pid of the process writing to the folder now (0 if unknown),
            None when none is.
        results_problem: why ``results.nc`` fails its checksum or configuration
            check (None when it passes, is absent, or a sweep is writing it).
    """

    units: int
    done: int
    missing: int
    corrupt: int
    replicas: int
    diverged: int
    merged: bool
    running: int | None = None
    results_problem: str | None = None

    def line(self) -> str:
        if self.running is None and self.results_problem:
            state = (
                f"results.nc is NOT usable: {self.results_problem}; re-run the same command "
                "to rebuild it from the finished units"
            )
        elif self.running is None:
            state = f"results.nc {'written and verified' if self.merged else 'not yet written'}"
        else:
            state = f"a sweep is running on it{f' (pid {self.running})' if self.running else ''}"
        return (
            f"{self.done}/{self.units} units done, {self.missing} missing, {self.corrupt} corrupt; "
            f"{self.diverged} of {self.replicas} replicas in finished units diverged; {state}"
        )


def status(out: str | os.PathLike) -> SweepStatus:
    """How far a results folder has got (reads config.json and the unit files; writes nothing)."""
    from thermosgd.config import from_dict

    if not isinstance(out, (str, os.PathLike)):
        raise UsageError(f"status: expected a results folder path, got {type(out).__name__}")
    out = Path(os.path.expanduser(os.fspath(out)))
    path = out / CONFIG_FILE
    if not path.exists():
        raise UsageError(f"{out} is not a sweep folder (no {CONFIG_FILE})")
    try:
        cfg = from_dict(_read_config(path))
    except UsageError as exc:
        raise UsageError(f"{out} is not a two-layer sweep folder ({str(exc).split('; choose')[0]})") from None
    units = plan_units(cfg)
    states = []
    diverged = replicas = 0
    for u in units:
        state = unit_state(out, u)
        if state == DONE:
            ds = read_unit(out, u, cfg)
            if ds is None:  # checksum fine but not this config's unit
                state = CORRUPT
            else:
                diverged += int(ds["diverged"].values.sum())
                replicas += int(ds["diverged"].size)
        states.append(state)
    running = lock_holder(out)
    return SweepStatus(
        units=len(units),
        done=states.count(DONE),
        missing=states.count(MISSING),
        corrupt=states.count(CORRUPT),
        replicas=replicas,
        diverged=diverged,
        merged=(out / RESULTS_FILE).exists(),
        running=running,
        results_problem=None if running is not None else results_problem(out),
    )


# Worker processes pay when the units' work on one core is at least this long:
# starting the pool (a forkserver importing torch, then the workers) costs
# 1–2 s on an unloaded 2-core machine (benchmarks/bench_whole_command.py).
PROCESSES_PAY_SECONDS = 5.0


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep will do, decided before anything is written.

    Attributes:
        units: the work units.
        call_seeds: seeds per engine call.
        executor: "inline", "processes" or "dask" ("auto" resolved).
        workers: worker processes (None: the executor's default).
        cost: estimated peak memory and wall-clock time.
    """

    units: list[Unit]
    call_seeds: int
    executor: str
    workers: int | None
    scheduler: str | None
    cost: budget.Cost


def plan_sweep(
    cfg: SweepConfig, *, executor: str | None = "inline", workers: int | None = None, scheduler: str | None = None
) -> SweepPlan:
    """Units, where they run (``executor="auto"``: worker processes on every core when that
    pays, else inline) and what that costs; refuses a sweep that would not fit.

    Raises:
        UsageError: bad executor arguments, or a sweep too large for this machine's
            memory, for NetCDF files, or longer than 30 days (see ``budget.check``).
    """
    kind = resolve_kind(executor, workers=workers, scheduler=scheduler)
    units = plan_units(cfg)
    c = call_seeds(cfg)
    pos = {s: i for i, s in enumerate(cfg.train.seeds)}
    unit_calls = [pos[u.seeds[-1]] // c - pos[u.seeds[0]] // c + 1 for u in units]  # see units.engine_calls
    g = budget.Grid.of(cfg)

    def model(where: str, parallel: int):
        def cost_of(x: budget.Grid) -> budget.Cost:
            # Smaller grids tried for a suggestion keep the call size and unit shape.
            n = max(1, round(len(unit_calls) * x.seeds / g.seeds))
            return budget.sweep_cost(x, unit_calls[:n], min(c, x.seeds), workers=parallel, where=where)

        return cost_of

    if kind == "auto":
        kind, parallel = "inline", min(usable_cores(), len(units))
        inline_cost = model("inline", 1)(g)
        avail = budget.available_memory()
        if parallel >= 2 and inline_cost.seconds >= PROCESSES_PAY_SECONDS:
            par = model("processes", parallel)(g)
            if avail is None or par.memory <= avail:
                kind, workers = "processes", parallel
    if kind == "inline":
        cost_of = model("inline", 1)
    elif kind == "processes" or (kind == "dask" and not scheduler):
        n = workers or (usable_cores() if kind == "processes" else 2)
        cost_of = model("processes", n)
    else:  # a remote cluster: each unit on one of its cores, as many side by side as there are units
        cost_of = model("remote", len(units))
    cost = budget.check(g, cost_of, what="the sweep", netcdf=True)
    return SweepPlan(units, c, kind, workers, scheduler, cost)


def run_sweep(
    cfg: SweepConfig,
    out: str | os.PathLike,
    *,
    executor: str | None = "inline",
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
) -> xr.Dataset:
    """Run (or resume) a sweep into ``out`` and return the merged results.

    Args:
        cfg: validated configuration.
        out: results folder (created; must not hold another config's results).
        executor: "inline" (default), "auto" (worker processes on every core
            when the sweep is long enough for that to pay, else inline; the
            CLI's default), "processes" or "dask" (see ``open_executor``).
            Worker processes re-import a script's main module: guard the
            script's work with ``if __name__ == "__main__":``.
        workers: worker count for processes / a local Dask cluster.
        scheduler: address of a running Dask scheduler.
        progress: progress bars over units (and steps, inline).

    Returns:
        The merged Dataset, dims (lr, batch_size, seed, step), as
        :func:`thermosgd.load` returns it from ``out``.

    Raises:
        UsageError: the folder is locked by another process, holds another
            config, the sweep would not fit in memory or run longer than 30 days
            (nothing is written then), or a unit failed (finished units stay on disk).
    """
    require_config(cfg, "sweep")
    torch_device(cfg.train.device, "[train] device")  # a missing GPU fails before anything is written
    out = check_output_folder(out, "sweep")  # before anything is written; refusals touch nothing
    check_config(out, cfg)
    plan = plan_sweep(cfg, executor=executor, workers=workers, scheduler=scheduler)
    kind, workers = plan.executor, plan.workers
    check_scheduler(scheduler)
    if cfg.data.inputs == "file":  # check the user's data file before anything is written
        from thermosgd.twolayer.engine import load_user_data

        load_user_data(cfg, None, None)
    inputs = [cfg.data.file] if cfg.data.inputs == "file" else []
    with folder_lock(out) as lock_fd:
        check_config(out, cfg)
        check_inputs(out, inputs)  # a changed data file is refused, never mixed into old results
        write_config(cfg.to_dict(), out)
        for tmp in stale_temporaries(out):  # ours (by name), and their writers are gone
            tmp.unlink(missing_ok=True)
        units = plan.units
        have = {u.index: ds for u in units if (ds := read_unit(out, u, cfg)) is not None}
        todo = [u for u in units if u.index not in have]
        if todo:
            with (
                open_executor(kind, workers=workers, scheduler=scheduler, inherited=(lock_fd,)) as ex,
                progress_bar(
                    len(units),
                    initial=len(have),
                    desc="units",
                    unit="unit",
                    enabled=progress and len(units) > 1,
                    lines=True,
                ) as bar,
            ):
                _run_units(
                    ex,
                    todo,
                    cfg,
                    out,
                    bar,
                    window=1 if kind == "inline" else len(todo),
                    step_progress=progress and kind == "inline",
                )
        merged = _merge(cfg, out, units, have)
        check_inputs(out, inputs)  # changed while the units ran: the merged results would mix both
        save_results(merged, out, cfg.to_dict())
    return merged


def _run_units(
    ex: Executor, todo: list[Unit], cfg: SweepConfig, out: Path, bar, *, window: int, step_progress: bool
) -> None:
    """Run ``todo`` on ``ex`` and write each unit as soon as it finishes.

    At most ``window`` units are in flight (1 inline: a unit is on disk before
    the next one starts). After a failure no new unit starts, the running ones
    are still written, then the failure is raised as one line.
    """
    cfg_dict = cfg.to_dict()
    queue = iter(todo)
    pending: dict[Future, Unit] = {}
    failed: tuple[Unit, BaseException] | None = None

    def fill() -> None:
        while failed is None and len(pending) < window:
            unit = next(queue, None)
            if unit is None:
                return
            pending[ex.submit(compute_unit, cfg_dict, unit.seeds, step_progress)] = unit

    fill()
    while pending:
        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
        for fut in sorted(finished, key=lambda f: pending[f].index):
            unit = pending.pop(fut)
            if fut.cancelled():
                continue
            exc = fut.exception()
            if exc is None:
                try:
                    write_unit(fut.result(), out, unit)
                except OSError as err:
                    raise UsageError(f"cannot write {unit.describe()} to {out}: {err.strerror or err}") from err
                bar.update(1)
            elif failed is None:
                failed = (unit, exc)
                for other in pending:
                    other.cancel()  # those not started yet; running ones finish and are kept
        fill()
    if failed is not None:
        unit, exc = failed
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UsageError(
            f"{unit.describe()} failed: {type(exc).__name__}{': ' + msg if msg else ''} "
            f"(finished units are kept; re-run the same command to resume)"
        ) from exc


def _merge(cfg: SweepConfig, out: Path, units: list[Unit], have: dict[int, xr.Dataset]) -> xr.Dataset:
    """Concatenate the units along ``seed`` in the config's seed order (``have``: already read)."""
    parts = []
    for u in units:
        ds = have[u.index] if u.index in have else read_unit(out, u, cfg)
        if ds is None:  # vanished or corrupted since it was written: recompute here
            write_unit(compute_unit(cfg.to_dict(), u.seeds), out, u)
            ds = read_unit(out, u, cfg)
            if ds is None:
                raise UsageError(f"{u.describe()} cannot be stored in {out}: it reads back corrupt")
        parts.append(ds)
    if len(parts) == 1:
        merged = parts[0]
    else:
        # Every keyword spelled out: xarray is changing the defaults of concat.
        merged = xr.concat(
            parts,
            dim="seed",
            data_vars="all",
            coords="minimal",
            compat="equals",
            join="exact",
            combine_attrs="override",
        )
    merged = merged.sel(seed=np.array(cfg.train.seeds, dtype=merged["seed"].dtype))
    merged.attrs = dict(parts[0].attrs)
    return merged
