"""The noise-ablation figure: one panel per noise model, the same rescaled axes.

Plotting only; the numbers come from :mod:`thermosgd.analysis.mechanism`.
"""

from __future__ import annotations

import xarray as xr
from matplotlib.figure import Figure

from thermosgd.figures.collapse import collapse_panel
from thermosgd.presets import PAPER_EXPONENT

__all__ = ["noise_models_figure"]


def noise_models_figure(
    runs: dict[str, xr.Dataset],
    over: str,
    *,
    title: str,
    metric: str = "activation_rate",
    fits: dict[str, str] | None = None,
) -> Figure:
    """``metric`` against the paper's rescaled time (t·η² or t/|B|), one panel per noise model, shared y axis.

    Args:
        runs: {noise model (or a setting such as "l = 8"): results dataset}, in panel order.
        over: the swept parameter, ``"lr"`` or ``"batch_size"``.
        title: the figure's title.
        metric: data variable to plot.
        fits: optional {noise model: a short fit label} appended to the panel titles.

    Returns:
        A :class:`matplotlib.figure.Figure` (no pyplot).
    """
    n = len(runs)
    fig = Figure(figsize=(3.4 * n, 3.2), layout="constrained")
    axes = fig.subplots(1, n, sharey=True, squeeze=False)[0]
    for i, (ax, (noise, ds)) in enumerate(zip(axes, runs.items())):
        # keys name a noise model ("sgd") or a whole setting ("l = 8", as the SDE limit's panels are keyed)
        name = noise if "=" in noise else f"noise = {noise}"
        label = name + (f"\n{fits[noise]}" if fits and noise in fits else "")
        collapse_panel(ax, ds, metric, over, PAPER_EXPONENT[over], title=label, legend=i == 0)
        if i:
            ax.set_ylabel("")
    fig.suptitle(title, fontsize="medium")
    return fig
