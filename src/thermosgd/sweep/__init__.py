"""Sweeps on disk: work units, executors (inline, processes, Dask), the results store.

The configuration schema is :mod:`thermosgd.config`; the engine that trains a
unit is :mod:`thermosgd.twolayer.engine`. ``thermosgd.run_sweep(cfg, out, ...)``
runs a sweep (calling the package, ``thermosgd.sweep(...)``, is a deprecated alias).
"""

from thermosgd._callable import make_callable
from thermosgd.sweep.run import SweepStatus, lock_holder, run_sweep, status
from thermosgd.sweep.store import load, save_dataset

__all__ = ["SweepStatus", "load", "lock_holder", "run_sweep", "save_dataset", "status"]

make_callable(__name__, "thermosgd.sweep.run", "run_sweep", instead="thermosgd.run_sweep")
