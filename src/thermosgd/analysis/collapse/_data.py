"""Collapse fit, part 1: the sweep's data, read and checked, and rescaled time (docs/methods/collapse.md)."""

from __future__ import annotations

import json
import math
from typing import NamedTuple

import numpy as np
import xarray as xr

# What scipy.stats' norm.cdf and t.ppf evaluate; importing scipy.stats itself would add
# ~0.5 s to the start of every command.
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


def parse_window(text: str | None) -> tuple[float | None, float | None] | None:
    """Parse ``"START:END"`` (either side may be empty) into a window tuple.

    Raises:
        UsageError: malformed text or ``START >= END``.
    """
    if text is None:
        return None
    parts = text.split(":")
    if len(parts) != 2:
        raise UsageError(f"window must look like START:END (got {text!r})", param="window")
    try:
        start, end = (float(p) if p.strip() else None for p in parts)
    except ValueError:
        raise UsageError(f"window must look like START:END with numbers (got {text!r})", param="window") from None
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
        names = ", ".join(sorted(str(n) for n in ds.data_vars if "step" in ds[n].dims))
        raise UsageError(f"unknown metric {metric!r}; this sweep has: {names}")
    da = ds[metric]
    if da.dtype.kind not in "biuf":
        raise UsageError(f"metric {metric!r} is not numeric (dtype {da.dtype}); a collapse fit needs real numbers")
    for dim in (over, "seed", "step"):
        if dim not in da.dims:
            raise UsageError(f"metric {metric!r} has no {dim!r} dimension (dims: {', '.join(map(str, da.dims))})")
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
    extra = [str(d) for d in da.dims if d not in (over, "seed", "step")]
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


def default_reference(values: np.ndarray) -> float:
    """The swept value nearest the geometric mean of ``values`` (``(K,)``, positive)."""
    target = np.exp(np.mean(np.log(values)))
    return float(values[int(np.argmin(np.abs(np.log(values) - np.log(target))))])


def _fmt_window(window) -> str:
    start, end = window
    return f"{'' if start is None else f'{start:g}'}:{'' if end is None else f'{end:g}'}"
