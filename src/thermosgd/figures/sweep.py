"""The paper's sweep figures: raw iterations and rescaled iterations.

For an η sweep (Fig. 2 top, Figs. 3, 4, 7, 8, 11, 12) three panels: raw
iterations t, then t·(η/η_ref) and t·(η/η_ref)² (footnote 5: the rescaled
iteration of the reference learning rate equals its raw iteration). For a |B|
sweep (Figs. 5, 6, 9, 10, 13, 14) two panels: raw, then t·(|B|_ref/|B|). The
reference is the swept value nearest the geometric mean (η = 0.05 for the
paper's 0.025…0.1, as in footnote 5), the same as in the collapse fit. Curves are means over seeds
(diverged replicas excluded) with a band of ± one standard error of the mean.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from pathlib import Path

import matplotlib
import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from thermosgd.analysis.collapse import default_reference
from thermosgd.figures.collapse import metric_label
from thermosgd.figures.save import save_figure


def rescaled_steps(steps: np.ndarray, value: float, ref: float, over: str, exponent: float) -> np.ndarray:
    """Rescaled iterations: t·(η/η_ref)^α for lr, t·(|B|/|B|_ref)^(−β) for batch_size."""
    # In float64 with IEEE semantics: a ratio beyond the float range (η from 1e-300 to 1e-3, squared)
    # gives inf, not Python's OverflowError; such points are left out of the panel (see _draw_panels).
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        factor = np.power(np.float64(value) / np.float64(ref), exponent if over == "lr" else -exponent)
        return steps * factor


def seed_summary(da: xr.DataArray, diverged: xr.DataArray | None = None) -> tuple[xr.DataArray, xr.DataArray]:
    """Mean over seeds and its standard error, diverged replicas excluded."""
    if diverged is not None:
        da = da.where(~diverged)
    n = da.notnull().sum("seed")
    mean = da.mean("seed", skipna=True)
    sem = da.std("seed", ddof=1, skipna=True) / np.sqrt(n.where(n > 0))
    return mean, sem.fillna(0.0)


def sweep_figure(
    ds: xr.Dataset,
    metric: str,
    *,
    over: str,
    out_stem: str | Path,
    title: str | None = None,
    extra_panel: Callable | None = None,
    extra_title: str | None = None,
) -> list[Path]:
    """Draw the paper's panels for ``metric`` across ``over`` and save PNG + PDF.

    Args:
        ds: results with dims (lr, batch_size, seed, step).
        metric: data variable to plot.
        over: "lr" or "batch_size" (the swept hyperparameter).
        out_stem: output path without suffix.
        title: figure title.
        extra_panel: optional ``f(ax)`` drawing one more panel (e.g. the
            collapse with a fitted exponent).

    Returns:
        The written files.
    """
    exponents = [0.0, 1.0, 2.0] if over == "lr" else [0.0, 1.0]
    n = len(exponents) + (extra_panel is not None)
    cols = min(n, 2)  # two panels a row: legible at the ~1000 px the page shows a figure
    rows = -(-n // cols)
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(5.4 * cols, 3.9 * rows + (0.5 if title else 0)), layout="constrained")
        axes = [ax for row in fig.subplots(rows, cols, sharey=True, squeeze=False) for ax in row]
        for ax in axes[n:]:
            ax.set_visible(False)
        _draw_panels(ds, metric, over, exponents, axes)
        if extra_panel is not None:
            extra_panel(axes[n - 1])
            legend = axes[n - 1].get_legend()
            if legend is not None:  # the first panel's legend names the curves
                legend.remove()
            if extra_title:
                axes[n - 1].set_title(extra_title)
        for k, ax in enumerate(axes[:n]):
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
            ax.set_ylabel(metric_label(metric) if k % cols == 0 else "")
        if title:
            fig.suptitle(figure_title(title))
        return save_figure(fig, Path(out_stem))


_STYLE: dict = {
    "font.size": 11,
    "axes.titlesize": 11,
    "legend.fontsize": 10,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
}


def _draw_panels(ds: xr.Dataset, metric: str, over: str, exponents: list[float], axes) -> None:
    """The seed-mean curves with ± s.e.m. bands, one panel per rescaling; the legend (first panel)
    lists only curves that were drawn (a swept value whose replicas all diverged has none)."""
    div = ds["diverged"] if "diverged" in ds else None
    mean, sem = seed_summary(ds[metric], div)
    values = ds[over].values
    ref = default_reference(np.asarray(values, dtype=float))
    other = "batch_size" if over == "lr" else "lr"
    cmap = matplotlib.colormaps["viridis"]
    steps = ds["step"].values.astype(float)
    for ax, expo in zip(axes, exponents):
        for i, v in enumerate(values):
            for j, w in enumerate(ds[other].values):
                m = mean.sel({over: v, other: w}).values
                if not np.isfinite(m).any():
                    continue
                e = sem.sel({over: v, other: w}).values
                x = rescaled_steps(steps, float(v), ref, over, expo)
                if not np.isfinite(x).all():  # rescaled beyond the float range: nothing to draw
                    continue
                color = cmap(i / max(len(values) - 1, 1))
                label = _label(over, v) + ("" if ds.sizes[other] == 1 else f", {_label(other, w)}")
                ax.plot(x, m, color=color, lw=1.4, ls=["-", "--", ":", "-."][j % 4], label=label)
                ax.fill_between(x, m - e, m + e, color=color, alpha=0.2, lw=0)
        ax.set_xlabel(_xlabel(over, expo))
    if axes[0].get_lines():
        axes[0].legend()


def figure_title(text: str) -> str:
    """A title said once and in the page's symbols: "fig11: Fig. 11: … eta sweep" → "fig11: … η sweep"."""
    text = re.sub(r"^(fig\S*.*?): Fig\. [^:]+: ", r"\1: ", text)
    text = re.sub(r"\beta\b", "η", text).replace("||V||", "‖V‖").replace("||W||", "‖W‖")
    return "\n".join(textwrap.wrap(text, 95))


def _label(dim: str, v) -> str:
    return f"η = {float(v):g}" if dim == "lr" else f"|B| = {int(v)}"


def _xlabel(over: str, expo: float) -> str:
    if expo == 0:
        return "iteration t"
    if over == "lr":
        return r"t·(η/η$_{ref}$)" + ("" if expo == 1 else f"$^{{{expo:g}}}$")
    return r"t·|B|$_{ref}$/|B|"
