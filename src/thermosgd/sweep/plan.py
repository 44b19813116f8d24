"""What a sweep will do, decided before anything is written: its units, where they run, what that costs."""

from __future__ import annotations

import os
from dataclasses import dataclass

from thermosgd.config import SweepConfig
from thermosgd.sweep.executors import resolve_kind
from thermosgd.sweep.units import Unit, call_seeds, plan_units
from thermosgd.twolayer import budget

__all__ = ["PROCESSES_PAY_SECONDS", "SweepPlan", "plan_sweep", "usable_cores"]

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
