"""Orchestration: run the paper's presets end to end and write results, figures and reports."""

from thermosgd.reproduce.run import reproduce

__all__ = ["reproduce"]
