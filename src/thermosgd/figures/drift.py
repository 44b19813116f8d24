"""Figure of the drift experiment: measured noise-induced drift beside the paper's prediction.

Plotting only; the numbers come from :mod:`thermosgd.analysis.drift`. Built on
:class:`matplotlib.figure.Figure` (Agg canvas), no pyplot state.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from thermosgd.analysis.drift import excess_parts

__all__ = ["drift_figure"]

_STYLES = ["-", "--", ":", "-."]


def _curves(ax, traj: xr.DataArray, ylabel: str, title: str, zero_line: bool = True):
    """One line per (η, |B|): block mean ± s.e. against steps."""
    lrs, bss = traj["lr"].values, traj["batch_size"].values
    colors = [f"C{i}" for i in range(len(lrs))]
    Q = traj.sizes["block"]
    for li, lr in enumerate(lrs):
        for ki, bs in enumerate(bss):
            da = traj.sel(lr=lr, batch_size=bs)
            m, se = da.mean("block"), da.std("block", ddof=1) / math.sqrt(Q)
            t = da["step"].values
            ax.plot(t, m, color=colors[li], ls=_STYLES[ki % 4], lw=1.2, label=f"η={lr:g}, |B|={bs}")
            ax.fill_between(t, m - se, m + se, color=colors[li], alpha=0.2, lw=0)
    if zero_line:
        ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("SGD step t")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)


def _scaling(ax, rows: list[dict], quantity: str, title: str, extra: str | None = None):
    """|measured| and |paper| window drift against η²/|B| (log-log), sign in the marker fill.

    ``extra``: a further measured quantity drawn as grey triangles (early window).
    """
    for wi, window in enumerate(("early", "late")):
        sel = [r for r in rows if r["quantity"] == quantity and r["window"] == window]
        if not sel:
            continue
        x = np.array([r["lr"] ** 2 / r["batch_size"] for r in sel])
        m = np.array([r["measured"] for r in sel])
        p = np.array([r["predicted"] for r in sel])
        color = f"C{wi}"
        neg, pos = m < 0, m >= 0
        ax.scatter(x[neg], -m[neg], color=color, marker="o", label=f"measured {window} (<0)")
        ax.scatter(x[pos], m[pos], facecolor="none", edgecolor=color, marker="o", label=f"measured {window} (>0)")
        ax.scatter(x, np.abs(p), color=color, marker="x", label=f"paper {window} (<0)")
    if extra:
        sel = [r for r in rows if r["quantity"] == extra and r["window"] == "early"]
        ax.scatter(
            [r["lr"] ** 2 / r["batch_size"] for r in sel],
            [abs(r["measured"]) for r in sel],
            color="gray",
            marker="^",
            label=f"|{extra}| early (Itô piece, >0)",
        )
    xs = np.array(sorted({r["lr"] ** 2 / r["batch_size"] for r in rows}))
    if xs.size:
        ax.plot(
            xs,
            xs / xs[-1] * max(abs(r["measured"]) for r in rows if r["quantity"] == quantity),
            color="gray",
            lw=0.8,
            ls="--",
            label="∝ η²/|B|",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("η²/|B|")
    ax.set_ylabel("|drift per step|")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6)


def _one_step(ax, rows: list[dict]):
    x = np.array([r["eta2_over_B"] for r in rows])
    order = np.argsort(x)
    x = x[order]

    def col(k):
        return np.array([rows[i][k] for i in order])

    ax.errorbar(x, col("V2_excess"), yerr=col("V2_excess_se"), fmt="o", ms=3, label="excess E[ΔV²] (measured, >0)")
    ax.plot(x, col("V2_ito"), "k_", ms=10, label="Itô η²var/|B| (exact)")
    ax.plot(x, -col("V2_predicted"), "x", color="C3", label="−paper V² drift")
    ax.errorbar(
        x,
        np.abs(col("b_excess")),
        yerr=col("b_excess_se"),
        fmt="s",
        ms=3,
        color="C2",
        label="|excess E[Δb]| (expected 0)",
    )
    ax.plot(x, -col("b_predicted"), "+", color="C4", label="−paper b drift")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("η²/|B|")
    ax.set_ylabel("per step")
    ax.set_title("one step from the initialization (clones)", fontsize=9)
    ax.legend(fontsize=6)


def drift_figure(traj: xr.Dataset, summary: dict, title: str | None = None) -> Figure:
    """Six panels: excess E[b] and E[V²] over time, err2(t), window-drift scaling, one-step pieces.

    Args:
        traj: :func:`thermosgd.analysis.drift.trajectory_drift` dataset.
        summary: :meth:`DriftSummary.to_dict` of the same run.
        title: figure title.
    """
    fig = Figure(figsize=(15, 8.5))
    axes = fig.subplots(2, 3)
    parts = excess_parts(traj).mean("unit")
    _curves(axes[0, 0], parts["b"], "E[b]_SGD − b_ref (mean over units)", "noise-induced shift of the mean bias")
    _curves(
        axes[0, 1],
        parts["V2_shift"],
        "E[V]²_SGD − V²_ref (mean over units)",
        "noise-induced mean-shift part of V² (variance part excluded)",
    )
    _curves(axes[0, 2], traj["err2"], "err2 = E[(p − y)²]", "err2(t): the paper's factor in ψ", zero_line=False)
    axes[0, 0].legend(fontsize=6)
    _scaling(axes[1, 0], summary["windows"], "b", "drift of b per step vs η²/|B|")
    _scaling(
        axes[1, 1], summary["windows"], "V2_shift", "drift of V² (mean-shift part) per step vs η²/|B|", extra="V2_var"
    )
    _one_step(axes[1, 2], summary["one_step"])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
