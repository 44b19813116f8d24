"""Orchestration: run the paper's presets end to end and write results, figures and reports.

``thermosgd.run_presets(names, ...)`` is :func:`thermosgd.reproduce.run.reproduce` (calling the
package, ``thermosgd.reproduce(...)``, is a deprecated alias).
"""

from thermosgd._callable import make_callable
from thermosgd.reproduce.run import reproduce

__all__ = ["reproduce"]

make_callable(__name__, "thermosgd.reproduce.run", "reproduce", instead="thermosgd.run_presets")
