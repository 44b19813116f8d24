"""Run a sweep into a results folder: lock, plan units, run the missing ones, merge.

Re-running the same command on the same folder after any interruption
(Ctrl-C, ``kill -9``, a lost Dask worker) finishes only the missing or corrupt
units; the merged ``results.nc`` is bit-identical to an uninterrupted run.

Layout of a sweep folder (see also ``store``)::

    DIR/
      .lock           flock'ed by the process writing to DIR (holds its pid; see ``lock``)
      config.json     the configuration; another config is refused
      inputs.json     SHA-256 of the input data files; changed inputs are refused
      units/          unit-00000.nc + unit-00000.nc.sha256, ... (see ``units``)
      results.nc      all units merged along ``seed``, written last, with its
                      checksum file results.nc.sha256 (see ``store``)

A sweep writes only into a new or empty folder or one holding its own earlier
run (see :func:`thermosgd.sweep.store.check_output_folder`). What it will do is
decided by ``plan``; how far a folder has got is ``status``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import xarray as xr

from thermosgd.checks import require_config, torch_device
from thermosgd.config import SweepConfig
from thermosgd.errors import UsageError
from thermosgd.progress import bar as progress_bar
from thermosgd.sweep.executors import check_scheduler, open_executor
from thermosgd.sweep.lock import LOCK_FILE, folder_lock, lock_holder
from thermosgd.sweep.plan import PROCESSES_PAY_SECONDS, SweepPlan, plan_sweep, usable_cores
from thermosgd.sweep.status import SweepStatus, status
from thermosgd.sweep.store import (
    check_config,
    check_inputs,
    check_output_folder,
    save_results,
    stale_temporaries,
    write_config,
)
from thermosgd.sweep.units import Unit, compute_unit, read_unit, write_unit

__all__ = [  # the lock, plan and status names are re-exported: callers import them from here
    "LOCK_FILE",
    "PROCESSES_PAY_SECONDS",
    "SweepPlan",
    "SweepStatus",
    "check_config",
    "folder_lock",
    "lock_holder",
    "plan_sweep",
    "resumed_units",
    "run_sweep",
    "status",
    "usable_cores",
]


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
    with resumed_units(out, cfg, cfg.to_dict(), plan.units, inputs) as (lock_fd, have):
        units = plan.units
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


@contextmanager
def resumed_units(out: Path, config, stamp: dict, units: list[Unit], inputs=None) -> Iterator[tuple[int, dict]]:
    """The folder of a sweep or study, locked, ready to resume: its config checked and written,
    stale temporaries gone, and the units already on disk read.

    Args:
        out: the results folder (checked by :func:`check_output_folder`).
        config: what the folder's ``config.json`` must match (a SweepConfig, or a study's stamp).
        stamp: the configuration written to ``config.json``.
        units: every unit of the run.
        inputs: input files whose fingerprints the folder records (a changed one is refused);
            None: the run records none (a study fingerprints its inputs in its stamp).

    Yields:
        ``(lock_fd, {unit index: its Dataset})``: the lock's descriptor (for worker processes
        to inherit) and the finished units.
    """
    with folder_lock(out) as lock_fd:
        check_config(out, config)
        if inputs is not None:
            check_inputs(out, inputs)  # a changed data file is refused, never mixed into old results
        write_config(stamp, out)
        for tmp in stale_temporaries(out):  # ours (by name), and their writers are gone
            tmp.unlink(missing_ok=True)
        yield lock_fd, {u.index: ds for u in units if (ds := read_unit(out, u, config)) is not None}


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
