"""The arguments of :func:`thermosgd.analysis.collapse.fit_collapse`, checked before any work.

Each bad argument is one :class:`~thermosgd.errors.UsageError` line in the
library's terms; without these checks some were raw Python errors
(AttributeError, OverflowError, ZeroDivisionError) and some were accepted and
gave a fit of nonsense (NaN or string swept values, negative steps, a grid of
one point).
"""

from __future__ import annotations

import math
import numbers
import os

import numpy as np
import xarray as xr

from thermosgd.errors import UsageError

__all__ = ["check_fit_args"]


def _whole(value, what: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise UsageError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _finite(value, what: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise UsageError(f"{what} must be a finite number, got {value!r}")
    try:
        x = float(value)
    except OverflowError:
        raise UsageError(f"{what} is too large for a floating-point number") from None
    if not math.isfinite(x):
        raise UsageError(f"{what} must be a finite number, got {value!r}")
    return x


def _dataset(ds, over: str) -> None:
    if isinstance(ds, (str, os.PathLike)):
        raise UsageError(f"fit_collapse: expected a Dataset, got the path {ds!r}; load it with thermosgd.load(path)")
    if not isinstance(ds, xr.Dataset):
        raise UsageError(f"fit_collapse: expected an xarray Dataset (thermosgd.load(...)), got {type(ds).__name__}")
    for coord in (over, "step"):
        if coord not in ds.coords:
            continue  # the fit names a missing dimension itself
        values = ds[coord].values
        if values.dtype.kind not in "iuf":
            raise UsageError(f"fit_collapse: the {coord} coordinate must hold numbers, got dtype {values.dtype}")
        if not np.isfinite(values.astype(np.float64)).all():
            raise UsageError(f"fit_collapse: the {coord} coordinate holds NaN or infinite values: {values.tolist()}")
    if "step" in ds.coords and (ds["step"].values < 0).any():
        raise UsageError("fit_collapse: steps must be >= 0 (step counts SGD updates)")


def check_fit_args(ds, over: str, *, window, n_boot, reference, bounds, n_grid) -> None:
    """Refuse arguments of ``fit_collapse`` it cannot use, in one line each (see the module docstring).

    Raises:
        UsageError: ``ds`` not a Dataset (a DataArray or a path); NaN, infinite or
            non-numeric ``over`` or ``step`` coordinates, negative steps; ``bounds``
            not two finite numbers, low < high; ``n_grid`` not an integer >= 2;
            ``n_boot`` not an integer; ``window`` neither ``"START:END"`` nor a pair;
            ``reference`` not a finite positive number.
    """
    _dataset(ds, over)
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise UsageError(f"bounds must be a pair (low, high), got {bounds!r}")
    low, high = (_finite(b, "each of bounds") for b in bounds)
    if not low < high:
        raise UsageError(f"bounds must have low < high, got ({low}, {high})")
    _whole(n_grid, "n_grid (comparison points in rescaled time)", 2)
    if isinstance(n_boot, (bool, np.bool_)) or not isinstance(n_boot, (int, np.integer)):
        raise UsageError(f"n_boot must be an integer (0, or at least 2), got {n_boot!r}")
    if window is not None and not isinstance(window, str):
        if not isinstance(window, (tuple, list)) or len(window) != 2:
            raise UsageError(f'window must be "START:END" or a pair (start, end), got {window!r}')
        for end in window:
            if end is not None:
                _finite(end, "each end of the window")
    if reference is not None and not _finite(reference, "reference") > 0:
        raise UsageError(f"reference must be a positive swept value, got {reference!r}")
