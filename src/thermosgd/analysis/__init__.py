"""Analysis of finished sweeps: scaling-collapse fits with bootstrap intervals."""

from thermosgd.analysis.collapse import PREDICTED_EXPONENT, CollapseFit, fit_collapse, parse_window

__all__ = ["CollapseFit", "fit_collapse", "parse_window", "PREDICTED_EXPONENT"]
