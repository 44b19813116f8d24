"""Analysis: pure functions from result datasets to numbers (no training, no files, no figures).

Public: :func:`fit_collapse` and :class:`CollapseFit` (the scaling collapse with its
interval), :func:`judge` and :class:`Verdict` (a claim's verdict, with the replicas left
out), :func:`parse_window`; the modules ``drift``, ``equal_error``, ``generalization`` and
``mechanism`` hold each experiment's estimators.
"""

from thermosgd.analysis.collapse import PREDICTED_EXPONENT, CollapseFit, fit_collapse, parse_window
from thermosgd.analysis.verdict import Verdict, judge

__all__ = ["CollapseFit", "PREDICTED_EXPONENT", "Verdict", "fit_collapse", "judge", "parse_window"]
