"""The one place for power-law fits: weighted log-log slopes and log-log regressions.

NumPy only, so every layer (the walk's flux exponents, the drift's η and |B|
exponents) uses the same arithmetic.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["weighted_slope", "loglog_regression", "percentile_interval"]


def weighted_slope(x, y, sy=None) -> tuple[float, float]:
    """Weighted least-squares slope of ``y`` on ``x`` and its standard error.

    Args:
        x, y: ``(n,)`` abscissae and ordinates (for a power law: logs of both).
        sy: ``(n,)`` standard errors of ``y`` (weights ``1/sy²``); None: equal weights,
            and the returned standard error is then not meaningful (unit errors assumed).

    Returns:
        ``(slope, stderr)``; ``(nan, nan)`` for fewer than two distinct ``x``.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(set(np.round(x, 12))) < 2:
        return float("nan"), float("nan")
    w = np.ones_like(x) if sy is None else 1.0 / np.maximum(np.asarray(sy, dtype=float), 1e-12) ** 2
    xm = np.sum(w * x) / np.sum(w)
    sxx = np.sum(w * (x - xm) ** 2)
    slope = float(np.sum(w * (x - xm) * y) / sxx)
    return slope, float(math.sqrt(1.0 / sxx))


def loglog_regression(lr, bs, values) -> tuple[float, float]:
    """Exponents of ``|value| ∝ η^α |B|^(−β)`` by least squares in log space: ``(α, β)``."""
    A = np.column_stack([np.ones_like(lr), np.log(lr), -np.log(bs)])
    coef, *_ = np.linalg.lstsq(A, np.log(np.abs(values)), rcond=None)
    return coef[1], coef[2]


def percentile_interval(draws, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap draws ``(n_boot,)``."""
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    lo, hi = np.percentile(np.asarray(draws, dtype=float), q)
    return float(lo), float(hi)
