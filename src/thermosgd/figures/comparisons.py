"""Figures of the equal-training-error comparison and of the generalization grid.

Plotting only; numbers come from :mod:`thermosgd.analysis.equal_error` and
:mod:`thermosgd.analysis.generalization`.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

__all__ = ["equal_error_figure", "generalization_figure"]


def equal_error_figure(res: xr.Dataset, title: str | None = None) -> Figure:
    """σ, ‖V‖ and η·t* at the first crossing of ε against η: one thin line per seed, mean ± s.e.

    Args:
        res: :func:`thermosgd.analysis.equal_error.at_first_crossing` result.
    """
    res = res.squeeze("batch_size", drop=True) if "batch_size" in res.dims else res
    lrs = res["lr"].values
    fig = Figure(figsize=(12, 3.8))
    axes = fig.subplots(1, 3)
    t = res["step_at_target"].where(res["reached"]).astype(float)
    panels = [
        (res["activation_rate"], "activation rate σ at ε"),
        (res["v_norm"], "‖V‖ at ε"),
        (t * res["lr"], "η · t* (Li & Liang: constant)"),
    ]
    for ax, (da, label) in zip(axes, panels):
        v = da.transpose("lr", "seed").values
        for s in range(v.shape[1]):
            ax.plot(lrs, v[:, s], color="gray", lw=0.5, alpha=0.5)
        n = np.isfinite(v).sum(1)
        m = np.nanmean(v, 1)
        se = np.nanstd(v, 1, ddof=1) / np.sqrt(np.maximum(n, 1))
        ax.errorbar(lrs, m, yerr=se, color="C0", marker="o", lw=2)
        ax.set_xscale("log")
        ax.set_xlabel("η")
        ax.set_ylabel(label)
    fig.suptitle(
        title or f"same init, trained to training error ≤ {res.attrs.get('target', float('nan')):g}", fontsize=10
    )
    fig.tight_layout()
    return fig


def generalization_figure(summary: dict, title: str | None = None) -> Figure:
    """Test accuracy against final activation rate and ‖V‖, one point per (η, |B|) cell (± s.e.)."""
    rows = summary["rows"]
    lrs = sorted({r["lr"] for r in rows})
    bss = sorted({r["batch_size"] for r in rows})
    markers = "osD^v<>"
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    for ax, key, label in ((axes[0], "activation_rate", "final activation rate"), (axes[1], "v_norm", "final ‖V‖")):
        for r in rows:
            ax.errorbar(
                r[key],
                r["test_accuracy"],
                xerr=r[key + "_se"],
                yerr=r["test_accuracy_se"],
                color=f"C{lrs.index(r['lr'])}",
                marker=markers[bss.index(r["batch_size"]) % len(markers)],
                ms=5,
                lw=0.8,
            )
        c = summary["correlations"]["cells"][f"test_accuracy~{key}"]
        ax.set_title(f"Spearman over cells ρ = {c['rho']:+.2f} (p = {c['p']:.2g})", fontsize=9)
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy")
    for i, lr in enumerate(lrs):
        axes[0].plot([], [], color=f"C{i}", lw=3, label=f"η={lr:g}")
    for j, bs in enumerate(bss):
        axes[0].plot([], [], color="k", ls="", marker=markers[j % len(markers)], label=f"|B|={bs}")
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
