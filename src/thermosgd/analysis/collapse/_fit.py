"""Collapse fit, part 4: the public fit, :func:`fit_collapse`, and its result, :class:`CollapseFit`."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import numpy as np
import xarray as xr

# What scipy.stats' norm.cdf and t.ppf evaluate; importing scipy.stats itself would add
# ~0.5 s to the start of every command.
from thermosgd.analysis.collapse._data import (
    DEFAULT_BOUNDS,
    INTERVAL,
    PAIRINGS,
    PREDICTED_EXPONENT,
    _check_informative,
    _check_window,
    _grid,
    _scale,
    default_reference,
    mean_curves,
    parse_window,
    shared_streams,
    sweep_data,
)
from thermosgd.analysis.collapse._score import _Scorer
from thermosgd.analysis.collapse._search import _polish, _search, expanded_percentiles
from thermosgd.analysis.fit_args import check_fit_args
from thermosgd.errors import UsageError


@dataclass(frozen=True)
class CollapseFit:
    """Result of :func:`fit_collapse`.

    Attributes:
        metric: data variable that was fitted.
        over: swept parameter, ``"lr"`` (exponent α) or ``"batch_size"`` (β).
        exponent: best exponent (α or β, sign convention of docs/methods/collapse.md).
        ci_low, ci_high: bootstrap interval (NaN when ``n_boot == 0``).
        ci_level: nominal coverage of the interval, e.g. 0.95.
        score: collapse-quality score at ``exponent`` (0 = perfect).
        score_raw: score with no rescaling (exponent 0).
        score_predicted: score at the paper's exponent (α = 2, β = 1).
        predicted: the paper's exponent for ``over``.
        n_seeds: number of seeds in the sweep.
        n_boot: bootstrap resamples used (those that lose a value, or leave a
            noise term with fewer than 2 distinct seeds, are skipped).
        values: swept values that entered the fit, ascending.
        reference: ``x_ref`` of the rescaled time.
        window: ``(start, end)`` in rescaled time, ``None`` for an open end.
        bounds: search interval of the exponent.
        boot_std: standard deviation of the bootstrap exponents.
        score_method: ``"paired"``, ``"independent"`` or ``"plain"`` (docs/methods/collapse.md).
        interval: how ``ci_low``/``ci_high`` were computed (``"none"`` without resamples).
    """

    metric: str
    over: str
    exponent: float
    ci_low: float
    ci_high: float
    ci_level: float
    score: float
    score_raw: float
    score_predicted: float
    predicted: float
    n_seeds: int
    n_boot: int
    values: tuple[float, ...]
    reference: float
    window: tuple[float | None, float | None]
    bounds: tuple[float, float]
    boot_std: float
    score_method: str = "plain"
    interval: str = INTERVAL

    def to_dict(self) -> dict:
        """JSON-ready dict (NaN becomes ``None``)."""
        out = asdict(self)
        out["values"] = list(self.values)
        out["window"] = list(self.window)
        out["bounds"] = list(self.bounds)
        for key, val in out.items():
            if isinstance(val, float) and not math.isfinite(val):
                out[key] = None
        return out

    def to_json(self) -> str:
        """One-line JSON object."""
        return json.dumps(self.to_dict())


def _score_method(ds: xr.Dataset, alive: np.ndarray, pairing: str) -> str:
    """The score a fit uses (docs/methods/collapse.md), or UsageError when ``pairing`` cannot be honoured."""
    if pairing not in PAIRINGS:
        raise UsageError(f"pairing must be one of {', '.join(PAIRINGS)} (got {pairing!r})")
    per_value = alive.sum(axis=1)
    common = min((alive[k] & alive[k2]).sum() for k in range(len(alive)) for k2 in range(k + 1, len(alive)))
    if pairing == "paired" and common < 2:
        raise UsageError(f"a paired score needs 2 seeds alive at every pair of values (fewest in common: {common})")
    if pairing == "independent" and per_value.min() < 2:
        raise UsageError(f"an independent-streams score needs 2 surviving seeds per value (fewest: {per_value.min()})")
    if pairing != "auto":
        return pairing
    if shared_streams(ds) is not False and common >= 2:
        return "paired"
    return "independent" if per_value.min() >= 2 else "plain"


def fit_collapse(
    ds: xr.Dataset,
    metric: str,
    over: str,
    window: tuple[float | None, float | None] | str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    *,
    ci_level: float = 0.95,
    reference: float | None = None,
    bounds: tuple[float, float] = DEFAULT_BOUNDS,
    n_grid: int = 200,
    pairing: str = "auto",
) -> CollapseFit:
    """Fit the collapse exponent of ``metric`` over the swept parameter ``over``.

    Args:
        ds: sweep results, dims ``(lr, batch_size, seed, step)`` (size-1 dims
            allowed; the dimension not fitted must have one value).
        metric: data variable, e.g. ``"activation_rate"``.
        over: ``"lr"`` (fit α in ``t·η^α``) or ``"batch_size"`` (β in ``t·|B|^(−β)``).
        window: ``(start, end)`` or ``"START:END"`` in rescaled time
            (reference-run iterations); ``None`` = everything.
        n_boot: bootstrap resamples over seeds; 0 skips the interval (NaN).
            The expanded interval reads the 0.6 % tails (8 seeds), so keep it
            near 1000 (for 4 values × 501 recorded steps, 1000 resamples add about
            0.01 s with 8 seeds and 0.7 s with 256).
        seed: seed of the bootstrap's random generator (``≥ 0``).
        ci_level: nominal coverage of the interval.
        reference: ``x_ref``; default the swept value nearest the geometric mean.
        bounds: search interval for the exponent.
        n_grid: number of comparison points in rescaled time.
        pairing: ``"auto"``, ``"paired"``, ``"independent"`` or ``"plain"``:
            how the seed noise is removed from the score (docs/methods/collapse.md).

    Returns:
        :class:`CollapseFit`.

    Raises:
        UsageError: unknown metric or ``over``, a non-numeric or all-NaN metric,
            missing dimension, fewer than 2 swept values (after dropping fully
            diverged ones) or duplicate ones, fewer than 2 seeds when
            ``n_boot > 0``, a window outside the data or holding fewer than 2
            recorded steps, a metric constant in time inside the window, or a
            ``pairing`` the surviving seeds cannot support.
    """
    return _fit(
        ds,
        metric,
        over,
        window,
        n_boot,
        seed,
        ci_level=ci_level,
        reference=reference,
        bounds=bounds,
        n_grid=n_grid,
        pairing=pairing,
    )[0]


def _fit(ds, metric, over, window, n_boot, seed, *, ci_level, reference, bounds, n_grid, pairing):
    """:func:`fit_collapse`, also returning the ``(n_boot',)`` bootstrap exponents (for coverage studies)."""
    check_fit_args(ds, over, window=window, n_boot=n_boot, reference=reference, bounds=bounds, n_grid=n_grid)
    window = _check_window(parse_window(window) if isinstance(window, str) else window)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(f"the bootstrap seed must be a non-negative integer (got {seed!r})")
    if not 0 < ci_level < 1:
        raise UsageError(f"ci_level must lie strictly between 0 and 1 (got {ci_level})")
    values, steps, raw, alive = sweep_data(ds, metric, over)
    n_seeds = raw.shape[1]
    keep = alive.any(axis=1)
    raw, alive, values = raw[keep], alive[keep], values[keep]
    if values.size < 2:
        raise UsageError(f"fewer than 2 {over} values have a non-diverged run of {metric!r}")
    if np.any(values <= 0):
        raise UsageError(f"{over} values must be positive for a power-law rescaling")
    if n_boot > 0 and n_seeds < 2:
        raise UsageError(
            f"a bootstrap over seeds needs at least 2 seeds (the sweep has {n_seeds}); use n_boot=0", param="n_boot"
        )
    if n_boot == 1 or n_boot < 0:
        raise UsageError(f"n_boot must be 0 (no confidence interval) or at least 2, got {n_boot}", param="n_boot")
    if reference is None:
        reference = default_reference(values)
    grid = _grid(steps, window, n_grid)  # the reference run's own span: its τ is t
    _check_informative(raw, alive, steps, window, metric)
    method = _score_method(ds, alive, pairing)
    scorer = _Scorer(raw, alive, steps, values, over, reference, grid, method)

    # Row 0: the data (every seed once); rows 1..: bootstrap resamples as seed multiplicities.
    weights = np.ones((1, n_seeds))
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
        resampled = np.zeros((n_boot, n_seeds))
        np.add.at(resampled, (np.arange(n_boot)[:, None], idx), 1.0)
        weights = np.concatenate([weights, resampled])
    dens = scorer.denominators(weights)
    # A resample that loses a value, or keeps < 2 distinct seeds for a noise term, has no score.
    ok = (dens > 0).all(axis=1)
    weights, dens = weights[ok], dens[ok]
    found, cells = _search(scorer, weights, dens, bounds)
    scale = _scale(mean_curves(raw, alive), steps, window)

    def score_at(e: float) -> float:
        return float(scorer.scores(np.array([e]), weights[:1], dens[:1])[0, 0]) / scale

    exponent = _polish(score_at, bounds, int(cells[0]), float(found[0]))
    boots = found[1:]
    if boots.size:
        used = int(alive.any(axis=0).sum())
        low, high = expanded_percentiles(used, ci_level) if used > 1 else (0.0, 100.0)
        ci_low, ci_high = (float(v) for v in np.percentile(boots, [low, high]))
        boot_std = float(boots.std(ddof=1)) if boots.size > 1 else math.nan
    else:
        ci_low = ci_high = boot_std = math.nan

    fit = CollapseFit(
        metric=metric,
        over=over,
        exponent=exponent,
        ci_low=ci_low,
        ci_high=ci_high,
        ci_level=ci_level,
        score=score_at(exponent),
        score_raw=score_at(0.0),
        score_predicted=score_at(PREDICTED_EXPONENT[over]),
        predicted=PREDICTED_EXPONENT[over],
        n_seeds=n_seeds,
        n_boot=int(boots.size),
        values=tuple(float(v) for v in values),
        reference=float(reference),
        window=window,
        bounds=(float(bounds[0]), float(bounds[1])),
        boot_std=boot_std,
        score_method=method,
        interval=INTERVAL if boots.size else "none",
    )
    return fit, boots
