"""Run a sweep into a results folder: lock, plan units, run the missing ones, merge.

Re-running the same command on the same folder after any interruption
(Ctrl-C, ``kill -9``, a lost Dask worker) finishes only the missing or corrupt
units; the merged ``results.nc`` is bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from concurrent.futures import FIRST_COMPLETED, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from thermosgd.errors import UsageError
from thermosgd.sweep.config import SweepConfig
from thermosgd.sweep.executors import open_executor
from thermosgd.sweep.store import CONFIG_FILE, RESULTS_FILE, save_dataset, write_config
from thermosgd.sweep.units import compute_unit, plan_units, read_unit, unit_state, write_unit

LOCK_FILE = ".lock"


@contextmanager
def folder_lock(out: Path) -> Iterator[None]:
    """Exclusive lock on a results folder; released by the OS if the process dies."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        fh = open(out / LOCK_FILE, "a+")
    except OSError as exc:
        raise UsageError(f"cannot write to output folder {out}: {exc.strerror}") from None
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        fh.close()
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise UsageError(
                f"another thermosgd process is writing to {out}; wait for it or choose another --out"
            ) from None
        raise
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


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


def check_config(out: Path, cfg: SweepConfig) -> None:
    """Refuse a folder that holds results of another configuration."""
    path = out / CONFIG_FILE
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise UsageError(f"{path} is unreadable; choose a new --out folder") from None
    new = json.loads(json.dumps(cfg.to_dict()))
    if old != new:
        raise UsageError(
            f"{out} holds results of a different config ({_first_difference(old, new)}); "
            "choose a new --out folder"
        )


@dataclass(frozen=True)
class SweepStatus:
    units: int
    done: int
    missing: int
    corrupt: int
    replicas: int
    diverged: int
    merged: bool

    def line(self) -> str:
        return (
            f"{self.done}/{self.units} units done, {self.missing} missing, {self.corrupt} corrupt; "
            f"{self.diverged} of {self.replicas} replicas in finished units diverged; "
            f"results.nc {'written' if self.merged else 'not yet written'}"
        )


def status(out: str | os.PathLike) -> SweepStatus:
    """How far a results folder has got (reads config.json and the unit files)."""
    from thermosgd.sweep.config import from_dict

    out = Path(out)
    path = out / CONFIG_FILE
    if not path.exists():
        raise UsageError(f"{out} is not a sweep folder (no {CONFIG_FILE})")
    cfg = from_dict(json.loads(path.read_text()))
    units = plan_units(cfg)
    states = [unit_state(out, u) for u in units]
    diverged = replicas = 0
    for u, s in zip(units, states):
        if s == "done":
            ds = read_unit(out, u)
            if ds is not None:
                diverged += int(ds["diverged"].values.astype(bool).sum())
                replicas += int(ds["diverged"].size)
    return SweepStatus(
        units=len(units), done=states.count("done"), missing=states.count("missing"),
        corrupt=states.count("corrupt"), replicas=replicas, diverged=diverged,
        merged=(out / RESULTS_FILE).exists(),
    )


def run_sweep(
    cfg: SweepConfig,
    out: str | os.PathLike,
    *,
    executor: str = "inline",
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
) -> xr.Dataset:
    """Run (or resume) a sweep into ``out`` and return the merged results.

    Args:
        cfg: validated configuration.
        out: results folder (created; must not hold another config's results).
        executor: "inline", "processes" or "dask" (see ``open_executor``).
        workers: worker count for processes / a local Dask cluster.
        scheduler: address of a running Dask scheduler.
        progress: progress bars over units (and steps, inline).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"output path {out} exists and is not a folder")
    with folder_lock(out):
        check_config(out, cfg)
        write_config(cfg.to_dict(), out)
        units = plan_units(cfg)
        todo = [u for u in units if unit_state(out, u) != "done"]
        cfg_dict = cfg.to_dict()
        inline = executor == "inline" and not scheduler
        bar = tqdm(total=len(units), initial=len(units) - len(todo), desc="units", unit="unit",
                   disable=not progress or len(units) <= 1)
        if todo:
            with open_executor(executor, workers=workers, scheduler=scheduler) as ex:
                futures = {
                    ex.submit(compute_unit, cfg_dict, u.seeds, progress and inline): u for u in todo
                }
                pending = set(futures)
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        write_unit(fut.result(), out, futures[fut])
                        bar.update(1)
        bar.close()
        parts = []
        for u in units:
            ds = read_unit(out, u)
            if ds is None:  # vanished or corrupted while we ran: recompute here
                ds = compute_unit(cfg_dict, u.seeds)
                write_unit(ds, out, u)
            parts.append(ds)
        merged = xr.concat(parts, dim="seed", data_vars="all", join="exact") if len(parts) > 1 else parts[0]
        merged = merged.sel(seed=np.array(cfg.train.seeds, dtype=merged["seed"].dtype))
        merged.attrs = parts[0].attrs
        save_dataset(merged, out / RESULTS_FILE)
    return merged
