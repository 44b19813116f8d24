"""Collapse fit: the exponent that makes a sweep's curves fall on one master curve.

For a learning-rate sweep the paper (Sec. 5–6, A.6) predicts that a metric
``m_η(t)`` depends on the step ``t`` and ``η`` only through ``t·η^α`` with
``α = 2``; for a batch-size sweep through ``t·|B|^(−β)`` with ``β = 1``. Given a
sweep, :func:`fit_collapse` finds the exponent that makes the seed-averaged
curves overlap best.

Rescaled time. Curves are compared against the reference value ``x_ref`` of
the swept parameter (by default the value nearest the geometric mean, e.g.
``η = 0.05`` for ``0.025, 0.05, 0.1`` as in the paper's footnote 5)::

    lr:          τ = t · (η / η_ref)^α
    batch_size:  τ = t · (|B| / |B|_ref)^(−β)

so ``τ`` is measured in iterations of the reference run.

Collapse-quality score (lower is better, 0 = perfect collapse). The
comparison region is the reference run's own span ``[0, T]`` in ``τ``
(intersected with the fit window), sampled on a grid of ``n_grid`` points.
Every curve is linearly interpolated onto the grid points it covers, and::

    score = Σ_grid Σ_k (m_k(τ) − m̄(τ))² / Σ_grid (K(τ) − 1)  /  Var_ref

i.e. the pooled across-curve variance (``K(τ) ≥ 2`` curves present at grid
point ``τ``, ``m̄`` their mean) divided by the variance of all seed-averaged
values inside the window (fixed for a given data set, so the score is
scale-free and comparable between exponents). It is the fraction of the
metric's variance not explained by a single master curve. Fixing the
comparison region to the reference span, instead of the curves' mutual
overlap, matters: the mutual overlap shrinks towards ``τ = 0`` as the exponent
grows, where all curves still sit at their common initial value, which would
reward absurd exponents.

Fit window. ``window=(start, end)`` restricts the comparison to
``start ≤ τ ≤ end`` in *rescaled* time (reference-run iterations), for
example to drop an initial transient that is not thermophoretic. It is not a
per-curve cut in raw steps: cutting every curve at the same raw steps makes
their rescaled supports ``[start·f_k, end·f_k]`` differ by the factor
``(x_max/x_min)^exponent``, so their overlap (and with it the score) depends on
the exponent itself and vanishes for large exponents, biasing the fit. A
transient that ends at raw step ``t0`` in every run ends at
``τ ≤ t0 · max_k f_k``; choose ``start`` beyond that.

Minimization: the score is evaluated on a grid of exponents inside
``bounds`` (step 0.1), then refined with bounded Brent search around the best
grid point. Confidence interval: seeds are resampled with replacement (the
same resampled seed indices for every value of the swept parameter, seeded by
``seed``), the fit is repeated, and the percentile interval of the bootstrap
exponents is reported (with few seeds it runs slightly narrow: on the
synthetic sweeps of the tests, 8 seeds, 17 of 20 nominal-95 % intervals
covered the true exponent). Diverged replicas (``ds["diverged"]``) are excluded from
every average; a swept value with no surviving replica is dropped.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
import xarray as xr
from scipy.optimize import minimize_scalar

from thermosgd.errors import UsageError
from thermosgd.presets import PAPER_EXPONENT

SWEEP_OVER = tuple(PAPER_EXPONENT)
PREDICTED_EXPONENT = PAPER_EXPONENT  # the one table of the paper's exponents lives in presets
EXPONENT_SYMBOL = {"lr": "alpha", "batch_size": "beta"}
# τ = t · (x / x_ref)^(SIGN · exponent)
SIGN = {"lr": 1.0, "batch_size": -1.0}
DEFAULT_BOUNDS = (-2.0, 5.0)
_GRID_STEP = 0.1

__all__ = [
    "CollapseFit",
    "fit_collapse",
    "collapse_score",
    "collapse_scores",
    "rescaled_time",
    "mean_curves",
    "parse_window",
    "sweep_data",
    "SweepData",
    "default_reference",
    "PREDICTED_EXPONENT",
]


@dataclass(frozen=True)
class CollapseFit:
    """Result of :func:`fit_collapse`.

    Attributes:
        metric: data variable that was fitted.
        over: swept parameter, ``"lr"`` (exponent α) or ``"batch_size"`` (β).
        exponent: best exponent (α or β, sign convention of the module docstring).
        ci_low, ci_high: percentile bootstrap interval (NaN when ``n_boot == 0``).
        ci_level: coverage of the interval, e.g. 0.95.
        score: collapse-quality score at ``exponent`` (0 = perfect).
        score_raw: score with no rescaling (exponent 0).
        score_predicted: score at the paper's exponent (α = 2, β = 1).
        predicted: the paper's exponent for ``over``.
        n_seeds: number of seeds in the sweep.
        n_boot: bootstrap resamples used (those with a dropped value are skipped).
        values: swept values that entered the fit, ascending.
        reference: ``x_ref`` of the rescaled time.
        window: ``(start, end)`` in rescaled time, ``None`` for an open end.
        bounds: search interval of the exponent.
        boot_std: standard deviation of the bootstrap exponents.
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


def parse_window(text: str | None) -> tuple[float | None, float | None] | None:
    """Parse ``"START:END"`` (either side may be empty) into a window tuple.

    Raises:
        UsageError: malformed text or ``START >= END``.
    """
    if text is None:
        return None
    parts = text.split(":")
    if len(parts) != 2:
        raise UsageError(f"--window must look like START:END (got {text!r})")
    try:
        start, end = (float(p) if p.strip() else None for p in parts)
    except ValueError:
        raise UsageError(f"--window must look like START:END with numbers (got {text!r})") from None
    _check_window((start, end))
    return start, end


def _check_window(window) -> tuple[float | None, float | None]:
    if window is None:
        return (None, None)
    start, end = window
    if any(v is not None and not math.isfinite(v) for v in (start, end)):
        raise UsageError(f"fit window ends must be finite numbers (got {start}:{end})")
    if start is not None and end is not None and start >= end:
        raise UsageError(f"fit window start {start} must be below its end {end}")
    return (start, end)


class SweepData(NamedTuple):
    """One metric of a one-parameter sweep as plain arrays, swept values ascending.

    Attributes:
        values: ``(K,)`` swept values (learning rates or batch sizes).
        steps: ``(T,)`` SGD iteration numbers.
        data: ``(K, S, T)`` metric per value, seed and step.
        alive: ``(K, S)`` False for diverged or non-finite replicas.
    """

    values: np.ndarray
    steps: np.ndarray
    data: np.ndarray
    alive: np.ndarray


def sweep_data(ds: xr.Dataset, metric: str, over: str) -> SweepData:
    """Validate ``ds`` for a collapse over ``over`` and extract ``metric``.

    Raises:
        UsageError: unknown ``over`` or metric, a missing ``over``/``seed``/``step``
            dimension, fewer than 2 swept values, or another dimension with more
            than one value.
    """
    if over not in SWEEP_OVER:
        raise UsageError(f"cannot fit over {over!r}; choose one of {', '.join(SWEEP_OVER)}")
    if metric not in ds.data_vars:
        names = ", ".join(sorted(n for n in ds.data_vars if "step" in ds[n].dims))
        raise UsageError(f"unknown metric {metric!r}; this sweep has: {names}")
    da = ds[metric]
    for dim in (over, "seed", "step"):
        if dim not in da.dims:
            raise UsageError(f"metric {metric!r} has no {dim!r} dimension (dims: {', '.join(da.dims)})")
    if da.sizes[over] < 2:
        raise UsageError(f"the sweep has {da.sizes[over]} {over} value(s); a collapse fit needs at least 2")
    extra = [d for d in da.dims if d not in (over, "seed", "step")]
    for dim in extra:
        if da.sizes[dim] != 1:
            raise UsageError(
                f"metric {metric!r} varies over {dim!r} ({da.sizes[dim]} values) as well as {over!r}; "
                f"select one {dim} first (e.g. ds.sel({dim}=...))"
            )
    da = da.squeeze(extra, drop=True).transpose(over, "seed", "step")
    # Probe-set metrics are recorded only every probe_every steps (NaN in between):
    # keep the steps where the metric was recorded at all.
    da = da.dropna("step", how="all")
    data = np.asarray(da.values, float)
    alive = np.ones(data.shape[:2], dtype=bool)
    if "diverged" in ds:
        div = ds["diverged"]
        div = div.squeeze([d for d in div.dims if d not in (over, "seed")], drop=True)
        alive = ~div.transpose(over, "seed").values.astype(bool)
    alive &= np.isfinite(data).all(axis=-1)
    values, steps = np.asarray(da[over].values, float), np.asarray(da["step"].values, float)
    order, t_order = np.argsort(values), np.argsort(steps)
    if steps.size < 2 or np.any(np.diff(steps[t_order]) <= 0):
        raise UsageError(f"metric {metric!r} needs at least 2 distinct steps")
    return SweepData(values[order], steps[t_order], data[order][..., t_order], alive[order])


def mean_curves(data: np.ndarray, alive: np.ndarray, seeds: np.ndarray | None = None) -> np.ndarray:
    """Seed-averaged curves over surviving replicas.

    Args:
        data: ``(K, S, T)`` metric per swept value, seed and step.
        alive: ``(K, S)`` bool, False for diverged or non-finite replicas.
        seeds: optional ``(S',)`` seed indices (a bootstrap resample).

    Returns:
        ``(K, T)``; rows with no surviving replica are NaN.
    """
    if seeds is not None:
        data, alive = data[:, seeds], alive[:, seeds]
    count = alive.sum(axis=1)[:, None]
    total = np.where(alive[..., None], data, 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _weighted_means(masked: np.ndarray, alive: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``mean_curves(data, alive, idx)`` from ``masked = where(alive, data, 0)`` ``(K, S, T)``
    and ``counts = bincount(idx)`` ``(S,)``: a weighted sum instead of a copy of the resample."""
    w = (alive * counts[None, :]).astype(float)  # (K, S)
    count = w.sum(axis=1)[:, None]
    total = np.matmul(w[:, None, :], masked)[:, 0]
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def rescaled_time(steps: np.ndarray, values: np.ndarray, over: str, exponent: float, reference: float) -> np.ndarray:
    """``τ`` for every swept value: ``(K, T)`` from steps ``(T,)`` and values ``(K,)``."""
    factor = (np.asarray(values, float) / reference) ** (SIGN[over] * exponent)
    return factor[:, None] * np.asarray(steps, float)[None, :]


def _grid(steps: np.ndarray, window, n_grid: int) -> np.ndarray:
    lo, hi = float(steps[0]), float(steps[-1])
    start, end = window
    if start is not None:
        lo = max(lo, start)
    if end is not None:
        hi = min(hi, end)
    if not hi > lo:
        raise UsageError(
            f"fit window {_fmt_window(window)} does not overlap the reference run's steps {steps[0]:g}..{steps[-1]:g}"
        )
    return np.linspace(lo, hi, n_grid)


def _scale(curves: np.ndarray, steps: np.ndarray, window) -> float:
    """Variance of the seed-averaged values inside the window (raw steps)."""
    start, end = window
    keep = np.ones(steps.shape, bool)
    if start is not None:
        keep &= steps >= start
    if end is not None:
        keep &= steps <= end
    if keep.sum() < 2:
        keep[:] = True
    var = float(np.nanvar(curves[:, keep]))
    return var if var > 0 else 1.0


def collapse_score(
    curves: np.ndarray,
    steps: np.ndarray,
    values: np.ndarray,
    over: str,
    exponent: float,
    reference: float,
    grid: np.ndarray,
    scale: float,
) -> float:
    """Collapse-quality score (module docstring) of mean curves at one exponent.

    Args:
        curves: ``(K, T)`` seed-averaged curves.
        steps: ``(T,)`` raw SGD steps, ascending.
        values: ``(K,)`` swept values.
        over: ``"lr"`` or ``"batch_size"``.
        exponent: α or β.
        reference: ``x_ref``.
        grid: ``(G,)`` comparison points in rescaled time.
        scale: normalizing variance.

    Returns:
        Score ``≥ 0``; ``inf`` when no grid point is covered by two curves.
    """
    tau = rescaled_time(steps, values, over, exponent, reference)
    interp = np.full((len(values), grid.size), np.nan)
    for k in range(len(values)):
        covered = (grid >= tau[k, 0]) & (grid <= tau[k, -1])
        interp[k, covered] = np.interp(grid[covered], tau[k], curves[k])
    present = np.isfinite(interp)
    n = present.sum(axis=0)
    use = n >= 2
    if not use.any():
        return math.inf
    sub, pres = interp[:, use], present[:, use]
    mean = np.where(pres, sub, 0.0).sum(axis=0) / n[use]
    sq = np.where(pres, (sub - mean) ** 2, 0.0).sum()
    return float(sq / (n[use] - 1).sum() / scale)


def collapse_scores(
    curves: np.ndarray,
    steps: np.ndarray,
    values: np.ndarray,
    over: str,
    exponents: np.ndarray,
    reference: float,
    grid: np.ndarray,
    scale: float,
) -> np.ndarray:
    """:func:`collapse_score` at many exponents at once, ``(E,)`` from ``exponents (E,)``.

    Curve ``k`` at rescaled time ``τ = f_k·t`` is interpolated at ``t = τ/f_k`` on
    its own steps, so one ``np.interp`` call per curve serves every exponent. Equal
    to :func:`collapse_score` up to rounding (tested).
    """
    exponents = np.asarray(exponents, float)
    factor = (np.asarray(values, float) / reference)[None, :] ** (SIGN[over] * exponents[:, None])  # (E, K)
    E, K, G = exponents.size, len(values), grid.size
    covered = (grid >= factor[..., None] * steps[0]) & (grid <= factor[..., None] * steps[-1])  # (E, K, G)
    interp = np.full((E, K, G), np.nan)
    for k in range(K):
        q = grid[None, :] / factor[:, k, None]
        interp[:, k] = np.where(covered[:, k], np.interp(q, steps, curves[k]), np.nan)
    present = np.isfinite(interp)
    n = present.sum(axis=1)  # (E, G)
    use = n >= 2
    filled = np.where(present, interp, 0.0)
    mean = filled.sum(axis=1) / np.maximum(n, 1)
    sq = np.where(present & use[:, None, :], (filled - mean[:, None, :]) ** 2, 0.0).sum(axis=(1, 2))
    dof = np.where(use, n - 1, 0).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(dof > 0, sq / np.maximum(dof, 1) / scale, np.inf)


def _best_exponent(score_fn, bounds: tuple[float, float], scan=None) -> float:
    """Grid scan in steps of 0.1 (``scan``: the vectorized scores), then Brent around the best."""
    lo, hi = bounds
    grid = np.linspace(lo, hi, max(3, int(round((hi - lo) / _GRID_STEP)) + 1))
    scores = scan(grid) if scan is not None else np.array([score_fn(e) for e in grid])
    i = int(np.argmin(scores))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    res = minimize_scalar(score_fn, bounds=(a, b), method="bounded", options={"xatol": 1e-4})
    return float(res.x) if res.fun <= scores[i] else float(grid[i])


def default_reference(values: np.ndarray) -> float:
    """The swept value nearest the geometric mean of ``values`` (``(K,)``, positive)."""
    target = np.exp(np.mean(np.log(values)))
    return float(values[int(np.argmin(np.abs(np.log(values) - np.log(target))))])


def _fmt_window(window) -> str:
    start, end = window
    return f"{'' if start is None else f'{start:g}'}:{'' if end is None else f'{end:g}'}"


def fit_collapse(
    ds: xr.Dataset,
    metric: str,
    over: str,
    window: tuple[float | None, float | None] | str | None = None,
    n_boot: int = 200,
    seed: int = 0,
    *,
    ci_level: float = 0.95,
    reference: float | None = None,
    bounds: tuple[float, float] = DEFAULT_BOUNDS,
    n_grid: int = 200,
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
        seed: seed of the bootstrap's random generator.
        ci_level: coverage of the percentile interval.
        reference: ``x_ref``; default the swept value nearest the geometric mean.
        bounds: search interval for the exponent.
        n_grid: number of comparison points in rescaled time.

    Returns:
        :class:`CollapseFit`.

    Raises:
        UsageError: unknown metric or ``over``, missing dimension, fewer than 2
            swept values (after dropping fully diverged ones), fewer than 2
            seeds when ``n_boot > 0``, or a window outside the data.
    """
    if isinstance(window, str):
        window = parse_window(window)
    window = _check_window(window)
    values, steps, raw, alive = sweep_data(ds, metric, over)
    n_seeds = raw.shape[1]
    keep = alive.any(axis=1)
    raw, alive, values = raw[keep], alive[keep], values[keep]
    if values.size < 2:
        raise UsageError(f"fewer than 2 {over} values have a non-diverged run of {metric!r}")
    if np.any(values <= 0):
        raise UsageError(f"{over} values must be positive for a power-law rescaling")
    if n_boot > 0 and n_seeds < 2:
        raise UsageError(f"a bootstrap over seeds needs at least 2 seeds (the sweep has {n_seeds}); use --n-boot 0")
    if n_boot == 1 or n_boot < 0:
        raise UsageError(f"--n-boot must be 0 (no confidence interval) or at least 2, got {n_boot}")
    if reference is None:
        reference = default_reference(values)
    grid = _grid(steps, window, n_grid)  # the reference run's own span: its τ is t

    def scorer(curves: np.ndarray):
        scale = _scale(curves, steps, window)
        return (lambda e: collapse_score(curves, steps, values, over, e, reference, grid, scale),
                lambda es: collapse_scores(curves, steps, values, over, es, reference, grid, scale))

    score_at, scan = scorer(mean_curves(raw, alive))
    exponent = _best_exponent(score_at, bounds, scan)

    boots = []
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        # A resample's seed mean is a weighted sum over seeds (weights = how often each
        # seed was drawn): one small matrix product instead of copying the data.
        masked = np.where(alive[..., None], raw, 0.0)  # (K, S, T)
        for _ in range(n_boot):
            idx = rng.integers(0, n_seeds, size=n_seeds)
            resampled = _weighted_means(masked, alive, np.bincount(idx, minlength=n_seeds))
            if np.isnan(resampled).all(axis=1).any():
                continue  # a swept value lost all its replicas in this resample
            score_fn, scan_fn = scorer(resampled)
            boots.append(_best_exponent(score_fn, bounds, scan_fn))
    boots = np.asarray(boots)
    if boots.size:
        tail = 100 * (1 - ci_level) / 2
        ci_low, ci_high = (float(v) for v in np.percentile(boots, [tail, 100 - tail]))
        boot_std = float(boots.std(ddof=1)) if boots.size > 1 else math.nan
    else:
        ci_low = ci_high = boot_std = math.nan

    return CollapseFit(
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
    )
