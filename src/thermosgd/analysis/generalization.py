"""Beyond the paper: does the sparsity the effect produces go with generalization?

On a teacher task with a finite training set and a held-out test set, train an
(η, |B|) grid over seeds and put the final test accuracy beside the final
activation rate and ‖V‖. Rank correlations (Spearman) are reported across grid
cells (cell means) and across all replicas; they are correlations, not causes:
η and |B| change more than the activation rate.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from thermosgd.errors import UsageError

__all__ = ["final_values", "generalization_summary", "generalization_table"]

_METRICS = ("test_accuracy", "train_accuracy", "activation_rate", "v_norm")


def final_values(ds: xr.Dataset) -> xr.Dataset:
    """Final test/train accuracy, activation rate and ‖V‖, (lr, batch_size, seed); diverged → NaN."""
    if "test_error" not in ds:
        raise UsageError("the results have no test_error (set data.test_size > 0)")
    last = ds.isel(step=-1)
    out = xr.Dataset(
        {
            "test_accuracy": 1 - last["test_error"],
            "train_accuracy": 1 - last["error"],
            "activation_rate": last["activation_rate"],
            "v_norm": last["v_norm"],
        }
    )
    if "diverged" in ds:
        out = out.where(~ds["diverged"])
    out.attrs["step"] = int(ds["step"].values[-1])
    return out


def _spearman(a, b) -> dict:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return {"rho": float("nan"), "p": float("nan"), "n": int(ok.sum())}
    from scipy import stats  # here: scipy.stats costs ~0.5 s to import

    r = stats.spearmanr(a[ok], b[ok])
    return {"rho": float(r.statistic), "p": float(r.pvalue), "n": int(ok.sum())}


def generalization_summary(fv: xr.Dataset) -> dict:
    """Per-cell means ± s.e. over seeds and Spearman correlations.

    Returns:
        dict with ``rows`` (one per (η, |B|)), ``correlations`` (``cells``: over
        cell means; ``replicas``: over all replicas; each test accuracy vs
        activation rate and vs ‖V‖, also vs η²/|B|), ``step``.
    """
    rows = []
    for lr in fv["lr"].values:
        for bs in fv["batch_size"].values:
            c = fv.sel(lr=lr, batch_size=bs)
            row = {"lr": float(lr), "batch_size": int(bs), "eta2_over_B": float(lr) ** 2 / int(bs)}
            for m in _METRICS:
                v = c[m].values
                v = v[np.isfinite(v)]
                row[m] = float(v.mean()) if v.size else float("nan")
                row[m + "_se"] = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("nan")
                row["seeds"] = int(v.size)
            rows.append(row)
    col = lambda k: np.array([r[k] for r in rows])  # noqa: E731
    flat = lambda k: fv[k].values.ravel()  # noqa: E731
    noise = np.broadcast_to((fv["lr"] ** 2 / fv["batch_size"]).values[..., None], fv["v_norm"].shape).ravel()
    corr = {
        "cells": {
            "test_accuracy~activation_rate": _spearman(col("test_accuracy"), col("activation_rate")),
            "test_accuracy~v_norm": _spearman(col("test_accuracy"), col("v_norm")),
            "test_accuracy~eta2_over_B": _spearman(col("test_accuracy"), col("eta2_over_B")),
            "activation_rate~eta2_over_B": _spearman(col("activation_rate"), col("eta2_over_B")),
            "v_norm~eta2_over_B": _spearman(col("v_norm"), col("eta2_over_B")),
        },
        "replicas": {
            "test_accuracy~activation_rate": _spearman(flat("test_accuracy"), flat("activation_rate")),
            "test_accuracy~v_norm": _spearman(flat("test_accuracy"), flat("v_norm")),
            "test_accuracy~eta2_over_B": _spearman(flat("test_accuracy"), noise),
        },
    }
    return {"step": fv.attrs.get("step"), "rows": rows, "correlations": corr}


def generalization_table(summary: dict) -> str:
    """Markdown table and correlations of :func:`generalization_summary`."""
    lines = [
        f"### Final values after {summary['step']} steps (mean ± s.e. over seeds)",
        "",
        "| η | \\|B\\| | η²/\\|B\\| | test accuracy | train accuracy | activation rate | ‖V‖ |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summary["rows"]:
        lines.append(
            f"| {r['lr']:g} | {r['batch_size']} | {r['eta2_over_B']:.2g} | "
            f"{r['test_accuracy']:.4f} ± {r['test_accuracy_se']:.4f} | "
            f"{r['train_accuracy']:.4f} ± {r['train_accuracy_se']:.4f} | "
            f"{r['activation_rate']:.4f} ± {r['activation_rate_se']:.4f} | {r['v_norm']:.3f} ± {r['v_norm_se']:.3f} |"
        )
    lines += ["", "### Spearman rank correlations", "", "| over | pair | ρ | p | n |", "|---|---|---|---|---|"]
    for over, d in summary["correlations"].items():
        for pair, c in d.items():
            lines.append(f"| {over} | {pair} | {c['rho']:+.3f} | {c['p']:.2g} | {c['n']} |")
    return "\n".join(lines) + "\n"
