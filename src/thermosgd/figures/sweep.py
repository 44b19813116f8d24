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

from collections.abc import Callable
from pathlib import Path

import matplotlib
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from thermosgd.analysis.collapse import default_reference
from thermosgd.figures.save import save_figure

LABELS = {
    "activation_rate": "activation rate",
    "v_norm": r"$\|V\|_2$",
    "w_norm": r"$\|W\|_F$",
    "bias_mean": "mean bias",
    "loss": "loss",
    "grad_var": "gradient variance",
}


def rescaled_steps(steps: np.ndarray, value: float, ref: float, over: str, exponent: float) -> np.ndarray:
    """Rescaled iterations: t·(η/η_ref)^α for lr, t·(|B|/|B|_ref)^(−β) for batch_size."""
    ratio = value / ref
    return steps * ratio ** (exponent if over == "lr" else -exponent)


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
    fig = Figure(figsize=(4.2 * n, 3.4))
    axes = fig.subplots(1, n, sharey=True, squeeze=False)
    axes = axes[0]
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
                e = sem.sel({over: v, other: w}).values
                x = rescaled_steps(steps, float(v), ref, over, expo)
                color = cmap(i / max(len(values) - 1, 1))
                label = _label(over, v) + ("" if ds.sizes[other] == 1 else f", {_label(other, w)}")
                ax.plot(x, m, color=color, lw=1.4, ls=["-", "--", ":", "-."][j % 4], label=label)
                ax.fill_between(x, m - e, m + e, color=color, alpha=0.2, lw=0)
        ax.set_xlabel(_xlabel(over, expo))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(LABELS.get(metric, metric) + " (mean ± s.e.m.)")
    axes[0].legend(fontsize=8)
    if extra_panel is not None:
        extra_panel(axes[-1])
        axes[-1].grid(alpha=0.3)
        if extra_title:
            axes[-1].set_title(extra_title, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, Path(out_stem))


def _label(dim: str, v) -> str:
    return f"η={float(v):g}" if dim == "lr" else f"|B|={int(v)}"


def _xlabel(over: str, expo: float) -> str:
    if expo == 0:
        return "iteration t"
    if over == "lr":
        return r"t·(η/η$_{ref}$)" + ("" if expo == 1 else f"$^{{{expo:g}}}$")
    return r"t·|B|$_{ref}$/|B|"
