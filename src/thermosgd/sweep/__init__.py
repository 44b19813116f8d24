"""Sweeps on disk: work units, executors (inline, processes, Dask), the results store.

The configuration schema is :mod:`thermosgd.config`; the engine that trains a
unit is :mod:`thermosgd.twolayer.engine`.
"""

from thermosgd.sweep.run import SweepStatus, lock_holder, run_sweep, status
from thermosgd.sweep.store import load, save_dataset

__all__ = ["SweepStatus", "load", "lock_holder", "run_sweep", "save_dataset", "status"]
