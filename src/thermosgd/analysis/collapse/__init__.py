"""Collapse fit: the exponent that makes a sweep's curves fall on one master curve.

For a learning-rate sweep the paper (Sec. 5–6, A.6) predicts that a metric
``m_η(t)`` depends on the step ``t`` and ``η`` only through ``t·η^α`` with
``α = 2``; for a batch-size sweep through ``t·|B|^(−β)`` with ``β = 1``. Given a
sweep, :func:`fit_collapse` finds the exponent that makes the *expected*
(seed-averaged) curves overlap best, with a bootstrap interval over seeds.

The method (rescaled time, the noise-corrected score and its pairings, the
search, the interval and its measured coverage) is written out in
``docs/methods/collapse.md``. The parts, in the order a fit uses them:
:mod:`._data` (read and check the sweep), :mod:`._score` (the score for many
exponents at once), :mod:`._search` (search and bootstrap percentiles),
:mod:`._fit` (the public fit).
"""

from thermosgd.analysis.collapse._data import (
    EXPONENT_SYMBOL,
    PAIRINGS,
    PREDICTED_EXPONENT,
    SIGN,
    SweepData,
    default_reference,
    mean_curves,
    parse_window,
    rescaled_time,
    shared_streams,
    sweep_data,
)
from thermosgd.analysis.collapse._fit import CollapseFit, fit_collapse
from thermosgd.analysis.collapse._score import collapse_score
from thermosgd.analysis.collapse._search import expanded_percentiles

__all__ = [
    "CollapseFit",
    "fit_collapse",
    "collapse_score",
    "rescaled_time",
    "mean_curves",
    "parse_window",
    "sweep_data",
    "SweepData",
    "default_reference",
    "shared_streams",
    "expanded_percentiles",
    "EXPONENT_SYMBOL",
    "PREDICTED_EXPONENT",
    "PAIRINGS",
    "SIGN",
]
