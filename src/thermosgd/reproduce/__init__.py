"""Orchestration: run the paper's presets end to end and write results, figures and reports.

``thermosgd.reproduce(names, ...)`` calls :func:`thermosgd.reproduce.run.reproduce`.
"""

from thermosgd._callable import make_callable
from thermosgd.reproduce.run import reproduce

__all__ = ["reproduce"]

make_callable(__name__, "thermosgd.reproduce.run", "reproduce")
