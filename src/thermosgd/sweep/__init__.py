"""Sweeps: config schema, work units, executors, results store.

``thermosgd.sweep(cfg, out, ...)`` calls :func:`thermosgd.sweep.run.run_sweep`.
"""

from thermosgd._callable import make_callable

make_callable(__name__, "thermosgd.sweep.run", "run_sweep")
