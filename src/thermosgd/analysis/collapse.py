"""Collapse fit: the exponent that makes a sweep's curves fall on one master curve.

For a learning-rate sweep the paper (Sec. 5–6, A.6) predicts that a metric
``m_η(t)`` depends on the step ``t`` and ``η`` only through ``t·η^α`` with
``α = 2``; for a batch-size sweep through ``t·|B|^(−β)`` with ``β = 1``. Given a
sweep, :func:`fit_collapse` finds the exponent that makes the *expected*
(seed-averaged) curves overlap best.

Rescaled time. Curves are compared against the reference value ``x_ref`` of
the swept parameter (by default the value nearest the geometric mean, e.g.
``η = 0.05`` for ``0.025, 0.05, 0.1`` as in the paper's footnote 5)::

    lr:          τ = t · (η / η_ref)^α
    batch_size:  τ = t · (|B| / |B|_ref)^(−β)

so ``τ`` is measured in iterations of the reference run.

Collapse-quality score (lower is better, 0 = perfect collapse). The
comparison region is the reference run's own span ``[0, T]`` in ``τ``
(intersected with the fit window), sampled on a grid of ``n_grid`` points.
Every replica's curve is linearly interpolated onto the grid points its value
of the swept parameter covers. With ``μ_k(τ)`` the expected curve of value
``k`` and ``n(τ) ≥ 2`` values present at ``τ``, the score estimates::

    score = Σ_τ Σ_k (μ_k(τ) − μ̄(τ))² / Σ_τ (n(τ) − 1)  /  Var_ref
          = Σ_τ (1/n(τ)) Σ_{k<k'} (μ_k(τ) − μ_k'(τ))² / Σ_τ (n(τ) − 1)  /  Var_ref

i.e. the pooled across-curve variance of the expected curves, divided by the
variance of all seed-averaged values inside the window (fixed for a given data
set, so the score is scale-free and comparable between exponents): the
fraction of the metric's variance a single master curve leaves unexplained.
Fixing the comparison region to the reference span, instead of the curves'
mutual overlap, matters: the mutual overlap shrinks towards ``τ = 0`` as the
exponent grows, where all curves still sit at their common initial value,
which would reward absurd exponents.

Noise correction (``pairing``). The plug-in estimate of a pair term,
``(x̄_k − x̄_k')²`` from seed means, is biased: its expectation is
``(μ_k − μ_k')² + Var(x̄_k − x̄_k')``. When every value of the swept parameter
replays the same data stream and initialization (the engine's ``share_data``
and ``share_init``), the variance term collapses at exponent 0, where the
curves are compared at equal raw steps and their fluctuations cancel, and the
plug-in score has a dip there whatever the dynamics. The score therefore uses
an unbiased estimate of each pair term:

* ``"paired"`` (same seed index = same random streams): with
  ``d_s = x_{k,s}(τ) − x_{k',s}(τ)`` over the ``n`` seeds alive at both values
  (each seed's curve interpolated first, then differenced),
  ``[(Σ d_s)² − Σ d_s²] / (n(n − 1))``, the mean of ``d_s d_s'`` over seeds
  ``s ≠ s'``, i.e. ``d̄² − var(d)/n`` with the unbiased variance. Valid for any
  correlation between the values, as long as seeds are independent replicas.
* ``"independent"`` (independent streams): ``(x̄_k − x̄_k')² − v_k/n_k −
  v_k'/n_k'`` with unbiased per-value variances ``v``; uses every surviving
  replica even when the values' survivors differ.
* ``"plain"``: the biased plug-in score (seed means only). Used when a value
  has fewer than 2 surviving seeds, so the noise cannot be estimated.

``pairing="auto"`` (default) takes ``"paired"`` unless the dataset's
``attrs["config"]`` says neither data nor initialization was shared (then
``"independent"``); it falls back to ``"independent"`` when two values have
fewer than 2 surviving seeds in common, and to ``"plain"`` as above. The fit
records the score used in :attr:`CollapseFit.score_method`. The corrected
score is an unbiased estimate of a non-negative quantity, so it can be
slightly negative.

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
``bounds`` (step 0.1), then refined around the best grid point (bounded Brent
search for the estimate; a step-0.01 grid and a parabola through its best three
points for the bootstrap resamples).

Confidence interval: seeds are resampled with replacement (the same resampled
seed indices for every value of the swept parameter, so pairing is kept;
seeded by ``seed``) and the fit is repeated. A resample is a vector of seed
multiplicities ``w_s``; the noise-corrected pair terms then average over pairs
of *distinct original* seeds, ``[(Σ w d)² − Σ w² d²] / [(Σ w)² − Σ w²]``, so a
duplicated seed is never taken for an independent replica of itself. The
score is a quadratic form in ``w``, evaluated for all resamples at once: as
``w·M·w`` with ``(S, S)`` matrices for few seeds, and from the interpolated
weighted sums ``Σ_s w_s x_s(τ)`` for many (a cost per resample and exponent
independent of the number of seeds); both give the same numbers to round-off. The interval is the *expanded percentile*
interval (Hesterberg 2015, "What teachers should know about the bootstrap",
Am. Stat. 69:371): the bootstrap percentiles at ``Φ(±√(n/(n−1)) t_{n−1, 1−a/2})``
instead of ``1 ∓ a/2`` (``n`` seeds, ``a = 1 − ci_level``), which corrects the
percentile interval's narrowness with few seeds (with 8 seeds it takes the
0.57 % and 99.43 % points for a 95 % interval). Its coverage on synthetic
sweeps with 8 seeds, AR(1) noise, a drift, a transient, shared and independent
streams (``benchmarks/bench_collapse_coverage.py``, 500 draws per case,
standard error 0.01): 0.92–0.94 with independent streams, 0.98–1.00 with
shared ones (conservative there), for α ∈ {0.5, 1, 2} and β = 1; the plain
2.5–97.5 % percentiles of the same resamples covered 0.85–0.89 with
independent streams.

Diverged replicas (``ds["diverged"]``) and replicas with a non-finite value
are excluded from every average; a swept value with no surviving replica is
dropped.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
import xarray as xr
from scipy.optimize import minimize_scalar

# What scipy.stats' norm.cdf and t.ppf evaluate; importing scipy.stats itself would add
# ~0.5 s to the start of every command.
from scipy.special import ndtr, stdtrit

from thermosgd.analysis.fit_args import check_fit_args
from thermosgd.errors import UsageError
from thermosgd.presets import PAPER_EXPONENT

SWEEP_OVER = tuple(PAPER_EXPONENT)
PREDICTED_EXPONENT = PAPER_EXPONENT  # the one table of the paper's exponents lives in presets
EXPONENT_SYMBOL = {"lr": "alpha", "batch_size": "beta"}
# τ = t · (x / x_ref)^(SIGN · exponent)
SIGN = {"lr": 1.0, "batch_size": -1.0}
DEFAULT_BOUNDS = (-2.0, 5.0)
PAIRINGS = ("auto", "paired", "independent", "plain")
INTERVAL = "expanded percentile bootstrap over seeds"
_GRID_STEP = 0.1
_FINE_STEP = 0.01
_CHUNK = 32  # exponents per block of precomputed quadratic forms (bounds memory)
_BLOCK = 1 << 18  # elements of one (exponents, grid, rows) block of interpolated sums: 2 MiB, in cache
_TABLES = 1 << 23  # numbers in one chunk of weighted-sum tables (64 MiB)
_FORMS_RATIO = 16.0  # "forms" while J·S² ≤ this × the "sums" work per row and exponent (measured: 14–18)

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
    "PREDICTED_EXPONENT",
    "PAIRINGS",
]


@dataclass(frozen=True)
class CollapseFit:
    """Result of :func:`fit_collapse`.

    Attributes:
        metric: data variable that was fitted.
        over: swept parameter, ``"lr"`` (exponent α) or ``"batch_size"`` (β).
        exponent: best exponent (α or β, sign convention of the module docstring).
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
        score_method: ``"paired"``, ``"independent"`` or ``"plain"`` (module docstring).
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
        UsageError: unknown ``over`` or metric, a non-numeric or all-NaN metric,
            a missing ``over``/``seed``/``step`` dimension, fewer than 2 swept
            values, duplicate swept values, or another dimension with more than
            one value.
    """
    if over not in SWEEP_OVER:
        raise UsageError(f"cannot fit over {over!r}; choose one of {', '.join(SWEEP_OVER)}")
    if metric not in ds.data_vars:
        names = ", ".join(sorted(n for n in ds.data_vars if "step" in ds[n].dims))
        raise UsageError(f"unknown metric {metric!r}; this sweep has: {names}")
    da = ds[metric]
    if da.dtype.kind not in "biuf":
        raise UsageError(f"metric {metric!r} is not numeric (dtype {da.dtype}); a collapse fit needs real numbers")
    for dim in (over, "seed", "step"):
        if dim not in da.dims:
            raise UsageError(f"metric {metric!r} has no {dim!r} dimension (dims: {', '.join(da.dims)})")
    if da.sizes[over] < 2:
        raise UsageError(f"the sweep has {da.sizes[over]} {over} value(s); a collapse fit needs at least 2")
    swept = np.asarray(da[over].values, float)
    uniq, counts = np.unique(swept, return_counts=True)
    if uniq.size < swept.size:
        dup = uniq[counts > 1][0]
        raise UsageError(
            f"duplicate {over} values in the sweep ({over} = {dup:g} appears {counts[counts > 1][0]} times); "
            "a collapse fit needs distinct values"
        )
    extra = [d for d in da.dims if d not in (over, "seed", "step")]
    for dim in extra:
        if da.sizes[dim] != 1:
            raise UsageError(
                f"metric {metric!r} varies over {dim!r} ({da.sizes[dim]} values) as well as {over!r}; "
                f"select one {dim} first (e.g. ds.sel({dim}=...))"
            )
    da = da.squeeze(extra, drop=True).transpose(over, "seed", "step")
    if not np.isfinite(np.asarray(da.values, float)).any():
        raise UsageError(
            f"metric {metric!r} is NaN (or infinite) everywhere: every replica diverged or it was never recorded"
        )
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


def shared_streams(ds: xr.Dataset) -> bool | None:
    """Whether the sweep's values replay the same random streams per seed.

    Read from ``ds.attrs["config"]`` (JSON with a ``train`` section holding
    ``share_data`` and ``share_init``, as the two-layer engine writes it).

    Returns:
        True if data or initialization is shared, False if neither is, None if
        the config does not say.
    """
    try:
        train = json.loads(ds.attrs.get("config", "{}")).get("train", {})
    except (TypeError, ValueError, AttributeError):
        return None
    if not isinstance(train, dict) or not {"share_data", "share_init"} <= train.keys():
        return None
    return bool(train["share_data"]) or bool(train["share_init"])


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


def _in_window(steps: np.ndarray, window) -> np.ndarray:
    start, end = window
    keep = np.ones(steps.shape, bool)
    if start is not None:
        keep &= steps >= start
    if end is not None:
        keep &= steps <= end
    return keep


def _check_informative(data: np.ndarray, alive: np.ndarray, steps: np.ndarray, window, metric: str) -> None:
    """Refuse a window with < 2 recorded steps, or replicas all constant inside it."""
    keep = _in_window(steps, window)
    if keep.sum() < 2:
        inside = ", ".join(f"{s:g}" for s in steps[keep]) or "none"
        raise UsageError(
            f"fit window {_fmt_window(window)} holds {int(keep.sum())} recorded step(s) of the reference run "
            f"(steps: {inside}); a collapse fit needs at least 2 informative steps"
        )
    inside = data[..., keep][alive]  # (replicas, steps in window)
    spread = np.ptp(inside, axis=-1)
    if not np.any(spread > 1e-12 * np.maximum(np.abs(inside).max(axis=-1), 1e-300)):
        raise UsageError(
            f"metric {metric!r} is constant in time inside the fit window {_fmt_window(window)} "
            "for every replica: no variation to fit"
        )


def _scale(curves: np.ndarray, steps: np.ndarray, window) -> float:
    """Variance of the seed-averaged values inside the window (raw steps)."""
    keep = _in_window(steps, window)
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
    """Plain (plug-in) collapse score (module docstring) of mean curves at one exponent.

    This is the ``"plain"`` score of :func:`fit_collapse`, biased by the
    seed-mean noise; kept as a reference and for plotting.

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


class _Lattice(NamedTuple):
    """Where the grid falls in each value's raw steps, for ``E`` exponents (:meth:`_Scorer.lattice`).

    Attributes:
        idx: ``(K, E, G)`` left step of each grid point; ``T`` (a zero row) where not covered.
        frac: ``(K, E, G)`` interpolation weight of the right step; 0 where not covered.
        covered: ``(K, E, G)`` bool, the value's rescaled span holds the grid point.
        n: ``(E, G)`` values covering each grid point.
        inv_n: ``(E, G)`` ``1/n`` where ``n ≥ 2``, else 0.
        norm: ``(E,)`` normalizers ``Σ_τ (n(τ) − 1)`` over points with ``n ≥ 2``.
    """

    idx: np.ndarray
    frac: np.ndarray
    covered: np.ndarray
    n: np.ndarray
    inv_n: np.ndarray
    norm: np.ndarray


def _padded(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(T, X)`` values -> ``(T + 1, X)`` values and right differences, zero rows past the end."""
    T = table.shape[0]
    out = np.zeros((T + 1,) + table.shape[1:])
    out[:T] = table
    diff = np.zeros_like(out)
    np.subtract(out[1:T], out[: T - 1], out=diff[: T - 1])
    return out, diff


def _on_grid(table, diff, idx, frac, out=None, work=None) -> np.ndarray:
    """Linear interpolation ``lo + frac·(hi − lo)`` of ``(T + 1, X)`` tables at ``(E, G)`` points -> ``(E, G, X)``.

    ``out`` and ``work`` (``(E, G, X)``, optional) are filled instead of fresh arrays.
    """
    out = np.take(table, idx, axis=0, out=out, mode="clip")
    step = np.take(diff, idx, axis=0, out=work, mode="clip")
    np.multiply(step, frac[..., None], out=step)
    np.add(out, step, out=out)
    return out


def _weighted_sum(c: np.ndarray, a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``Σ_g c[e, g] a[e, g, :] b[e, g, :]`` -> ``(E, X)`` for ``(E, G)`` c and ``(E, G, X)`` a, b.

    ``out`` (``(E, G, X)``) holds the product; without it the product overwrites ``a``.
    """
    prod = np.multiply(a, b, out=a if out is None else out)
    return np.matmul(c[:, None, :], prod)[:, 0, :]


class _Scorer:
    """The score for any block of exponents and any seed weights.

    For exponent ``e`` and seed weights ``w`` (``(S,)``: 1 for the data,
    multiplicities for a bootstrap resample) the score's numerator is
    ``Σ_j w·M_j(e)·w / den_j(w)`` over groups ``j`` of terms that share a
    denominator ``den_j(w) = (w·u_j)(w·v_j) − off_j Σ w² u_j v_j`` (``u``, ``v``
    alive masks; ``off_j`` drops same-seed products: the U-statistic). It is
    divided by ``Σ_τ (n(τ) − 1)`` and by the variance scale.

    Each term of ``M_j`` has rank at most ``G`` (``c`` its grid weights,
    ``x_{k,s}(τ)`` the replica curves on the grid, ``X_k = Σ_s w_s x_{k,s}``)::

        pair (paired):               Σ_τ c(τ) (X_k(τ) − X_k'(τ))²    c = 1/n where both values cover τ
        self (independent, plain):   Σ_τ c(τ) X_k(τ)²               c = (n − 1)/n where k covers τ
        cross (independent, plain): −2 Σ_τ c(τ) X_k(τ) X_k'(τ)      c = 1/n where both cover τ

    and an off group leaves out the same-seed products ``Σ_s w_s² Σ_τ c(τ) d_s(τ)²``
    (``d_s`` the term's per-seed difference or curve). Two ways to evaluate it
    for ``B`` weight rows (:meth:`prepare`), equal to round-off:

    * ``"forms"`` (:class:`_Forms`): build the ``(S, S)`` matrices ``M_j(e)``
      and take ``w·M·w``: ``O(S²)`` per row and exponent, cheapest for few seeds.
    * ``"sums"`` (:class:`_WeightedSums`): interpolation is linear in the data,
      so ``X_k`` is the interpolation of the weighted sums
      ``Y_k(t) = Σ_s w_s data_{k,s}(t)``; one ``(T, S)·(S, B)`` product per weight
      set leaves ``O(G)`` work per row, exponent and term, whatever ``S``.
    """

    def __init__(self, data, alive, steps, values, over, reference, grid, method):
        self.data = np.where(alive[..., None], data, 0.0)  # (K, S, T), dead replicas zeroed
        self.alive = alive
        self.steps = steps
        self.values = values
        self.over = over
        self.reference = reference
        self.grid = grid
        self.method = method
        K = len(values)
        # Terms: (kind, k, k', u mask, v mask, off-diagonal only); grouped by denominator.
        terms = []
        if method == "paired":
            for k in range(K):
                for k2 in range(k + 1, K):
                    m = alive[k] & alive[k2]
                    terms.append(("pair", k, k2, m, m, True))
        else:
            off = method == "independent"
            for k in range(K):
                terms.append(("self", k, k, alive[k], alive[k], off))
            for k in range(K):
                for k2 in range(k + 1, K):
                    terms.append(("cross", k, k2, alive[k], alive[k2], False))
        groups: dict[tuple, list] = {}
        for term in terms:
            u, v = sorted((term[3].tobytes(), term[4].tobytes()))
            groups.setdefault((u, v, term[5]), []).append(term)
        self.groups = list(groups.values())
        self.u = np.array([g[0][3] for g in self.groups], float)  # (J, S)
        self.v = np.array([g[0][4] for g in self.groups], float)
        self.off = np.array([g[0][5] for g in self.groups], bool)
        # Units: the weighted sums X_k the terms read, one per (value, seed mask): a pair
        # term sums over the seeds alive at both values, the others over k's survivors.
        self.units: list[tuple[int, np.ndarray]] = []
        self.unit_of: list[tuple[int, int]] = []  # per term, in group order: units of (k, u) and (k', v)
        found: dict[tuple, int] = {}
        for group in self.groups:
            for _, k, k2, u, v, _ in group:
                pair = []
                for kk, mask in ((k, u), (k2, v)):
                    key = (kk, mask.tobytes())
                    if key not in found:
                        found[key] = len(self.units)
                        self.units.append((kk, mask.astype(float)))
                    pair.append(found[key])
                self.unit_of.append((pair[0], pair[1]))
        self.tables = [_padded(self.data[k].T) for k in range(K)]  # per-seed curves, (T + 1, S)

    def route(self) -> str:
        """``"forms"`` or ``"sums"``: the cheaper evaluation for this problem (class docstring)."""
        S = self.data.shape[1]
        forms = len(self.groups) * S * S  # w·M_j·w per row and exponent
        sums = self.grid.size * (len(self.units) + len(self.unit_of))  # interpolations and products
        return "forms" if forms <= _FORMS_RATIO * sums else "sums"

    def lattice(self, exponents: np.ndarray) -> _Lattice:
        """Grid points in every value's raw steps for ``(E,)`` exponents."""
        T = self.steps.size
        t0, t1 = self.steps[0], self.steps[-1]
        factor = (self.values[:, None] / self.reference) ** (SIGN[self.over] * exponents[None, :])  # (K, E)
        raw_t = self.grid[None, None, :] / factor[..., None]  # (K, E, G) raw step of each grid point
        # Same tolerance as comparing τ = f·t against the grid (round-off at the span's ends).
        covered = (raw_t >= t0 * (1 - 1e-12)) & (raw_t <= t1 * (1 + 1e-12))
        q = np.clip(raw_t, t0, t1)
        idx = np.clip(np.searchsorted(self.steps, q, side="right") - 1, 0, T - 2)
        frac = (q - self.steps[idx]) / (self.steps[idx + 1] - self.steps[idx])
        n = covered.sum(axis=0)  # (E, G)
        norm = np.where(n >= 2, n - 1, 0).sum(axis=-1).astype(float)
        inv_n = np.where(n >= 2, 1.0 / np.maximum(n, 1), 0.0)
        return _Lattice(np.where(covered, idx, T), np.where(covered, frac, 0.0), covered, n, inv_n, norm)

    def interpolate(self, lat: _Lattice) -> np.ndarray:
        """Each replica's curve on the grid: ``(K, E, S, G)`` values, 0 where its value does not cover τ."""
        x = np.stack([_on_grid(*self.tables[k], lat.idx[k], lat.frac[k]) for k in range(len(self.values))])
        return np.moveaxis(x, -1, 2)

    def forms(self, exponents: np.ndarray):
        """``(J, E, S, S)`` quadratic forms ``M_j`` and ``(E,)`` normalizers ``Σ_τ (n(τ) − 1)``."""
        lat = self.lattice(exponents)
        x, covered, n, inv_n = self.interpolate(lat), lat.covered, lat.n, lat.inv_n
        S = self.data.shape[1]
        mats = np.zeros((len(self.groups), exponents.size, S, S))
        for j, group in enumerate(self.groups):
            for kind, k, k2, u, _v, _ in group:
                if kind == "pair":
                    both = covered[k] & covered[k2]
                    d = (x[k] - x[k2]) * u[None, :, None]  # (E, S, G)
                    mats[j] += np.matmul(d * (inv_n * both)[:, None, :], d.transpose(0, 2, 1))
                elif kind == "self":
                    xk = x[k] * u[None, :, None]
                    mats[j] += np.matmul(xk * ((n - 1) * inv_n * covered[k])[:, None, :], xk.transpose(0, 2, 1))
                else:  # cross: −2/n · x̄_k x̄_k', symmetrized
                    both = covered[k] & covered[k2]
                    c = np.matmul(x[k] * (inv_n * both)[:, None, :], x[k2].transpose(0, 2, 1))
                    mats[j] -= c + c.transpose(0, 2, 1)
        diag = np.arange(S)
        for j in np.nonzero(self.off)[0]:
            mats[j][:, diag, diag] = 0.0  # the U-statistic: products of distinct seeds only
        return mats, lat.norm

    def denominators(self, weights: np.ndarray) -> np.ndarray:
        """``(B, J)`` denominators for ``(B, S)`` seed weights."""
        wu, wv = weights @ self.u.T, weights @ self.v.T
        same = (weights**2) @ (self.u * self.v).T
        return wu * wv - self.off[None, :] * same

    def same_seed(self, exponents: np.ndarray) -> np.ndarray:
        """``(J, E, S)``: each seed's own product ``Σ_τ c(τ) d_s(τ)²`` summed over an off group's terms.

        ``w·M_j·w`` of an off group leaves out ``Σ_s w_s² same[j, e, s]`` (zero for other groups).
        """
        K, S, G = len(self.values), self.data.shape[1], self.grid.size
        out = np.zeros((len(self.groups), exponents.size, S))
        if not self.off.any():
            return out
        step = min(exponents.size, max(1, _BLOCK // (G * S)))
        xs, tmp = np.empty((K, step, G, S)), np.empty((step, G, S))
        for lo in range(0, exponents.size, step):
            hi = min(lo + step, exponents.size)
            lat = self.lattice(exponents[lo:hi])
            x = xs[:, : hi - lo]
            for k in range(K):
                _on_grid(*self.tables[k], lat.idx[k], lat.frac[k], x[k], tmp[: hi - lo])
            d = tmp[: hi - lo]
            for j in np.nonzero(self.off)[0]:
                for kind, k, k2, u, _, _ in self.groups[j]:
                    if kind == "pair":
                        np.subtract(x[k], x[k2], out=d)
                        c = lat.inv_n * (lat.covered[k] & lat.covered[k2])
                    else:  # self (cross terms are never in an off group)
                        np.copyto(d, x[k])
                        c = (lat.n - 1) * lat.inv_n * lat.covered[k]
                    d *= u
                    out[j, lo:hi] += _weighted_sum(c, d, d)
        return out

    def prepare(self, weights: np.ndarray, dens: np.ndarray, route: str | None = None):
        """An evaluator of the scores of ``(B, S)`` weight rows (``(B, J)`` ``dens``) at any exponents.

        Args:
            route: ``"forms"``, ``"sums"`` or ``None`` (:meth:`route`).

        Returns:
            :class:`_Forms` or :class:`_WeightedSums`.
        """
        route = route or self.route()
        return (_Forms if route == "forms" else _WeightedSums)(self, weights, dens)

    def scores(self, exponents: np.ndarray, weights: np.ndarray, dens: np.ndarray, route: str | None = None):
        """``(B, E)`` scores (not yet divided by the variance scale) for ``(B, S)`` weights.

        ``inf`` where no two curves overlap; ``dens`` from :meth:`denominators`.
        """
        return self.prepare(weights, dens, route).scores(exponents)


class _Forms:
    """Scores as ``w·M·w`` with the ``(S, S)`` forms of :meth:`_Scorer.forms`; for few seeds."""

    def __init__(self, scorer: _Scorer, weights: np.ndarray, dens: np.ndarray):
        self.scorer, self.weights, self.dens = scorer, weights, dens

    def rows(self, rows: np.ndarray) -> _Forms:
        """The evaluator of a subset of the weight rows."""
        return _Forms(self.scorer, self.weights[rows], self.dens[rows])

    def scores(self, exponents: np.ndarray) -> np.ndarray:
        """``(B, E)`` scores at ``(E,)`` exponents."""
        out = np.empty((self.weights.shape[0], exponents.size))
        for lo in range(0, exponents.size, _CHUNK):
            mats, norm = self.scorer.forms(exponents[lo : lo + _CHUNK])
            total = np.zeros((norm.size, self.weights.shape[0]))  # (E, B)
            for j in range(mats.shape[0]):
                quad = np.einsum("ebs,bs->eb", self.weights @ mats[j], self.weights)  # w·M·w per row
                total += quad / self.dens[:, j]
            norm = norm[:, None]
            out[:, lo : lo + _CHUNK] = np.where(norm > 0, total / np.where(norm > 0, norm, 1.0), np.inf).T
        return out


class _WeightedSums:
    """Scores from the interpolated weighted sums ``X_k`` (:class:`_Scorer`); cost independent of ``S``.

    Rows are taken in chunks whose tables (``Y = Σ_s w_s m_s data_{k,s}`` per
    unit, value ``k`` and mask ``m``, with its step differences, each ``(T + 1, R)``)
    stay within ``_TABLES`` numbers, so long recordings do not multiply memory by ``B``.
    """

    def __init__(self, scorer: _Scorer, weights: np.ndarray, dens: np.ndarray):
        self.scorer, self.weights, self.dens = scorer, weights, dens

    def rows(self, rows: np.ndarray) -> _WeightedSums:
        """The evaluator of a subset of the weight rows."""
        return _WeightedSums(self.scorer, self.weights[rows], self.dens[rows])

    def scores(self, exponents: np.ndarray) -> np.ndarray:
        """``(B, E)`` scores at ``(E,)`` exponents."""
        sc = self.scorer
        B, G = self.weights.shape[0], sc.grid.size
        same = sc.same_seed(exponents)  # (J, E, S)
        R = min(B, max(1, _TABLES // (2 * len(sc.units) * (sc.steps.size + 1))))  # rows per chunk
        # Blocks of exponents whose (E, G, R) interpolated sums stay small (cache, memory);
        # the buffers are reused from block to block (fresh large arrays cost page faults).
        step = min(exponents.size, max(1, _BLOCK // (G * R)))
        out = np.empty((B, exponents.size))
        for r0 in range(0, B, R):
            w = self.weights[r0 : r0 + R]
            if r0 == 0 or w.shape[0] != R:
                ys, work = np.empty((len(sc.units), step, G, w.shape[0])), np.empty((step, G, w.shape[0]))
            tables = [_padded(sc.data[k].T @ (w * mask).T) for k, mask in sc.units]  # (T, S)·(S, R)
            w2, dens = w**2, self.dens[r0 : r0 + R]
            for lo in range(0, exponents.size, step):
                hi = min(lo + step, exponents.size)
                nums, norm = self._sums(exponents[lo:hi], tables, ys[:, : hi - lo], work[: hi - lo])
                total = np.zeros((hi - lo, w.shape[0]))  # (E, R)
                for j, num in enumerate(nums):
                    if sc.off[j]:
                        num -= same[j, lo:hi] @ w2.T
                    total += num / dens[:, j]
                norm = norm[:, None]
                out[r0 : r0 + R, lo:hi] = np.where(norm > 0, total / np.where(norm > 0, norm, 1.0), np.inf).T
        return out

    def _sums(self, exponents, tables, ys, tmp) -> tuple[list[np.ndarray], np.ndarray]:
        """Per group, ``(E, R)`` numerators without the same-seed products, and ``(E,)`` normalizers.

        ``tables``: a chunk's weighted sums; ``ys`` (``(U, E, G, R)``) and ``tmp`` (``(E, G, R)``): buffers.
        """
        sc = self.scorer
        lat = sc.lattice(exponents)
        cov, inv_n = lat.covered, lat.inv_n
        for i, ((k, _), table) in enumerate(zip(sc.units, tables)):
            _on_grid(*table, lat.idx[k], lat.frac[k], ys[i], tmp)
        nums = []
        terms = iter(sc.unit_of)
        for group in sc.groups:
            num = np.zeros((exponents.size, tmp.shape[-1]))
            for kind, k, k2, *_ in group:
                a, b = next(terms)
                if kind == "pair":
                    np.subtract(ys[a], ys[b], out=tmp)
                    num += _weighted_sum(inv_n * (cov[k] & cov[k2]), tmp, tmp)
                elif kind == "self":
                    num += _weighted_sum((lat.n - 1) * inv_n * cov[k], ys[a], ys[a], tmp)
                else:  # cross: −2/n · X_k X_k'
                    num -= 2 * _weighted_sum(inv_n * (cov[k] & cov[k2]), ys[a], ys[b], tmp)
            nums.append(num)
        return nums, lat.norm


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


def default_reference(values: np.ndarray) -> float:
    """The swept value nearest the geometric mean of ``values`` (``(K,)``, positive)."""
    target = np.exp(np.mean(np.log(values)))
    return float(values[int(np.argmin(np.abs(np.log(values) - np.log(target))))])


def _fmt_window(window) -> str:
    start, end = window
    return f"{'' if start is None else f'{start:g}'}:{'' if end is None else f'{end:g}'}"


def _score_method(ds: xr.Dataset, alive: np.ndarray, pairing: str) -> str:
    """The score a fit uses (module docstring), or UsageError when ``pairing`` cannot be honoured."""
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
            how the seed noise is removed from the score (module docstring).

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
    if isinstance(window, str):
        window = parse_window(window)
    window = _check_window(window)
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
        raise UsageError(f"a bootstrap over seeds needs at least 2 seeds (the sweep has {n_seeds}); use --n-boot 0")
    if n_boot == 1 or n_boot < 0:
        raise UsageError(f"--n-boot must be 0 (no confidence interval) or at least 2, got {n_boot}")
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
