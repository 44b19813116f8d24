"""Collapse fit, part 3: the exponent search (coarse grid, then polish) and the bootstrap's percentiles."""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar

# What scipy.stats' norm.cdf and t.ppf evaluate; importing scipy.stats itself would add
# ~0.5 s to the start of every command.
from scipy.special import ndtr, stdtrit

from thermosgd.analysis.collapse._score import _Scorer

_GRID_STEP = 0.1
_FINE_STEP = 0.01


def _exponent_grid(bounds: tuple[float, float], step: float) -> np.ndarray:
    lo, hi = bounds
    return np.linspace(lo, hi, max(3, int(round((hi - lo) / step)) + 1))


def _search(scorer: _Scorer, weights: np.ndarray, dens: np.ndarray, bounds) -> tuple[np.ndarray, np.ndarray]:
    """Best exponent for each of ``(B, S)`` weight rows, to about 1e-3.

    The score on the coarse grid (step 0.1) picks a cell ``[e_{i−1}, e_{i+1}]``
    per row; inside it, a lattice ten times finer and a parabola through the
    best three lattice points.

    Returns:
        ``(B,)`` exponents and ``(B,)`` coarse-grid indices of the chosen cells.
    """
    ev = scorer.prepare(weights, dens)
    coarse = _exponent_grid(bounds, _GRID_STEP)
    best = np.argmin(ev.scores(coarse), axis=1)
    ratio = int(round(_GRID_STEP / _FINE_STEP))
    fine = np.linspace(coarse[0], coarse[-1], (coarse.size - 1) * ratio + 1)
    out = np.empty(weights.shape[0])
    h = fine[1] - fine[0]
    for i in np.unique(best):
        a, b = max(i - 1, 0) * ratio, min(i + 1, coarse.size - 1) * ratio + 1
        rows = np.nonzero(best == i)[0]
        sc = ev.rows(rows).scores(fine[a:b])
        j = np.clip(np.argmin(sc, axis=1), 1, b - a - 2)
        y0, y1, y2 = (sc[np.arange(rows.size), j + d] for d in (-1, 0, 1))
        curv = y0 - 2 * y1 + y2
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.where(curv > 0, 0.5 * (y0 - y2) / curv, 0.0)
        out[rows] = np.clip(fine[a + j] + np.clip(shift, -1, 1) * h, fine[a], fine[b - 1])
    return out, best


def _polish(score_fn, bounds: tuple[float, float], cell: int, guess: float) -> float:
    """Bounded Brent search of ``score_fn`` in coarse cell ``cell``; ``guess`` if Brent does worse."""
    coarse = _exponent_grid(bounds, _GRID_STEP)
    a, b = coarse[max(cell - 1, 0)], coarse[min(cell + 1, coarse.size - 1)]
    res = minimize_scalar(score_fn, bounds=(a, b), method="bounded", options={"xatol": 1e-4})
    return float(res.x) if res.fun <= score_fn(guess) else float(guess)


def expanded_percentiles(n: int, ci_level: float) -> tuple[float, float]:
    """Percentiles (in %) of the expanded percentile interval for ``n`` independent units.

    ``Φ(∓√(n/(n−1)) · t_{n−1, 1−a/2})`` with ``a = 1 − ci_level`` (Hesterberg 2015).
    """
    a = 1.0 - ci_level
    z = math.sqrt(n / (n - 1)) * float(stdtrit(n - 1, 1 - a / 2))
    tail = 100 * float(ndtr(-z))
    return tail, 100 - tail
