"""The Hessian-trace figure: Hutchinson's trace and its bound (Eq. 62) against the step, per η.

Plotting only; the numbers come from :mod:`thermosgd.analysis.hessian_bound`.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from thermosgd import fmt
from thermosgd.analysis.hessian_bound import BOUND, TRACE

__all__ = ["hessian_bound_figure"]

_TITLES = {TRACE: "Hessian trace (Hutchinson)", BOUND: "its upper bound (Eq. 62)"}


def _seed_band(da: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over seeds and its standard error, per step (NaN replicas left out; NaN where none is left)."""
    values = np.asarray(da.transpose("seed", "step").values, dtype=float)
    finite = np.isfinite(values)
    n = finite.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(finite, values, 0.0).sum(axis=0) / n
        square = np.where(finite, (values - mean) ** 2, 0.0).sum(axis=0)
        se = np.where(n > 1, np.sqrt(square / np.maximum(n - 1, 1) / n), 0.0)
    return mean, se


def hessian_bound_figure(runs: dict[str, xr.Dataset], *, title: str) -> Figure:
    """Per setting (rows), the trace and the bound (columns) against the step, one line per η.

    Lines are the mean over seeds, bands ± its standard error over seeds (which holds
    Hutchinson's own scatter); replicas that diverged are left out. Both axes are
    logarithmic (the step axis linear below 1), so a bound far above the trace stays legible.

    Args:
        runs: {setting: study results with ``hessian_trace`` and ``hessian_trace_bound``}, in row order.
        title: the figure's title.
    """
    fig = Figure(figsize=(7.2, 2.7 * len(runs) + 0.4), layout="constrained")
    axes = fig.subplots(len(runs), 2, squeeze=False)
    for row, (setting, ds) in zip(axes, runs.items()):
        for ax, metric in zip(row, (TRACE, BOUND)):
            if metric not in ds:
                ax.set_axis_off()
                continue
            da = ds[metric].isel(batch_size=0)
            if "diverged" in ds:
                da = da.where(~ds["diverged"].isel(batch_size=0).astype(bool))
            steps = ds["step"].values
            for lr in ds["lr"].values:
                mean, se = _seed_band(da.sel(lr=lr))
                (line,) = ax.plot(steps, mean, label=f"η = {fmt.sig(float(lr))}")
                ax.fill_between(steps, mean - se, mean + se, color=line.get_color(), alpha=0.25, linewidth=0)
            ax.set_xscale("symlog", linthresh=1)
            if metric == BOUND:  # the bound can lie orders of magnitude above the trace; the trace's
                ax.set_yscale("log")  # estimate can be negative, so its axis stays linear
            ax.set_title(f"{setting}: {_TITLES[metric]}", fontsize="small")
            ax.set_xlabel("step")
        row[0].set_ylabel("trace of the probe-loss Hessian")
        row[0].legend(fontsize="x-small")
    fig.suptitle(title, fontsize="medium")
    return fig
