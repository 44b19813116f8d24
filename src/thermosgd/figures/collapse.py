"""Collapse figures: a sweep's curves against raw and rescaled time (Fig. 2–14).

Plotting only; the fit lives in :mod:`thermosgd.analysis.collapse`. Figures are
built on :class:`matplotlib.figure.Figure` directly (Agg canvas), so nothing
here touches pyplot's global state or the user's backend.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from thermosgd import fmt
from thermosgd.analysis.collapse import (
    EXPONENT_SYMBOL,
    SIGN,
    CollapseFit,
    default_reference,
    mean_curves,
    rescaled_time,
    sweep_data,
)

__all__ = ["collapse_panel", "collapse_figure", "PAPER_EXPONENTS", "METRIC_LABEL", "metric_label"]

#: One axis label per metric, on every panel and figure.
METRIC_LABEL = {
    "activation_rate": "activation rate",
    "v_norm": "‖V‖₂",
    "w_norm": "‖W‖_F",
    "bias_mean": "mean bias",
    "loss": "loss",
    "grad_var": "gradient variance",
}


def metric_label(metric: str) -> str:
    """The axis label of ``metric``: its name in :data:`METRIC_LABEL`, with the band's meaning."""
    return f"{METRIC_LABEL.get(metric, metric.replace('_', ' '))} (mean ± s.e.m.)"


# The panels the paper shows for each sweep: raw steps, then its rescalings.
PAPER_EXPONENTS = {"lr": (0.0, 1.0, 2.0), "batch_size": (0.0, 1.0)}
_SYMBOL = {"lr": "η", "batch_size": "|B|"}
_GREEK = {"alpha": "α", "beta": "β"}


def _axis_label(over: str, exponent: float, reference: float) -> str:
    if exponent == 0:
        return "SGD iteration t"
    sym = {"lr": r"\eta", "batch_size": "|B|"}[over]
    power = SIGN[over] * exponent
    return rf"$t\,({sym}/{reference:g})^{{{power:.3g}}}$"


def collapse_panel(
    ax,
    ds: xr.Dataset,
    metric: str,
    over: str,
    exponent: float,
    *,
    reference: float | None = None,
    window: tuple[float | None, float | None] | None = None,
    title: str | None = None,
    legend: bool = True,
):
    """Draw the seed-averaged curves of ``metric`` against rescaled time.

    One line per value of ``over`` (mean over non-diverged seeds) with a band of
    ± one standard error over seeds, against
    ``τ = t·(x/x_ref)^(±exponent)`` (``+`` for ``lr``, ``−`` for ``batch_size``).
    ``exponent = 0`` gives raw iterations. Usable as one extra panel in any figure.

    Args:
        ax: a matplotlib ``Axes``.
        ds: sweep results (see :func:`thermosgd.analysis.collapse.fit_collapse`).
        metric: data variable to plot.
        over: ``"lr"`` or ``"batch_size"``.
        exponent: α or β.
        reference: ``x_ref``; default as in the fit.
        window: fit window in rescaled time, shaded when given.
        title: panel title; a default names the rescaling.
        legend: draw a legend of the swept values.

    Returns:
        ``ax``.
    """
    values, steps, raw, alive = sweep_data(ds, metric, over)
    if reference is None:
        reference = default_reference(values)
    mean = mean_curves(raw, alive)
    count = alive.sum(axis=1)[:, None]
    sq = np.where(alive[..., None], (raw - mean[:, None, :]) ** 2, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sem = np.sqrt(sq / np.maximum(count - 1, 1) / np.maximum(count, 1))
    tau = rescaled_time(steps, values, over, exponent, reference)
    colors = _colors(len(values))
    for k, value in enumerate(values):
        if count[k, 0] == 0:
            continue
        ax.plot(tau[k], mean[k], color=colors[k], lw=1.2, label=f"{_SYMBOL[over]} = {value:g}")
        if count[k, 0] > 1:
            ax.fill_between(tau[k], mean[k] - sem[k], mean[k] + sem[k], color=colors[k], alpha=0.25, lw=0)
    # Beyond the reference run's span the curves are not compared; keep the view there.
    ax.set_xlim(steps[0], steps[-1])
    if window is not None and any(w is not None for w in window):
        lo = steps[0] if window[0] is None else window[0]
        hi = steps[-1] if window[1] is None else window[1]
        ax.axvspan(lo, hi, color="0.9", zorder=0, lw=0)
    ax.set_xlabel(_axis_label(over, exponent, reference))
    ax.set_ylabel(metric_label(metric))
    if title is None:
        title = "raw iterations" if exponent == 0 else f"rescaled, exponent {exponent:.3g}"
    ax.set_title(title, fontsize="medium")
    if legend:
        ax.legend(fontsize="small", frameon=False)
    return ax


def _colors(n: int):
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(x) for x in np.linspace(0.0, 0.85, n)]


def collapse_figure(ds: xr.Dataset, fit: CollapseFit) -> Figure:
    """The paper's panels for a sweep plus one rescaled by the fitted exponent.

    ``lr``: raw, ``t·η``, ``t·η²``, fitted ``t·η^α``; ``batch_size``: raw,
    ``t/|B|``, fitted ``t·|B|^(−β)``.

    Args:
        ds: sweep results.
        fit: the fit to show (metric, over, exponent, interval, window).

    Returns:
        A :class:`matplotlib.figure.Figure` (Agg canvas, no pyplot).
    """
    exponents = PAPER_EXPONENTS[fit.over]
    n = len(exponents) + 1
    fig = Figure(figsize=(3.6 * n, 3.2), layout="constrained")
    axes = fig.subplots(1, n, sharey=True)
    greek = _GREEK[EXPONENT_SYMBOL[fit.over]]
    sym = _SYMBOL[fit.over]
    for i, (ax, e) in enumerate(zip(axes, exponents)):
        title = "raw iterations" if e == 0 else f"rescaled by {sym}{'' if e == 1 else '²'}"
        if fit.over == "batch_size" and e == 1:
            title = "rescaled by 1/|B|"
        collapse_panel(ax, ds, fit.metric, fit.over, e, reference=fit.reference, title=title, legend=i == 0)
    collapse_panel(
        axes[-1],
        ds,
        fit.metric,
        fit.over,
        fit.exponent,
        reference=fit.reference,
        window=fit.window,
        title=f"fitted {greek} = {fmt.estimate(fit.exponent, fit.ci_low, fit.ci_high).replace(' (no CI)', '')}",
        legend=False,
    )
    fig.suptitle(f"{fit.metric}: collapse over {fit.over} (paper: {greek} = {fit.predicted:g})", fontsize="medium")
    return fig
