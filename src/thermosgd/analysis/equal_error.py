"""Equal-training-error comparison (Sec. 5, the paragraph after Eq. 28).

The paper combines Li & Liang (2018, Thm. 4.1: k times larger η needs k times
fewer steps to a target training error ε) with Eq. 28 to claim: same model and
initialization, ``η1 < η2``, each trained to the same training error, then
``σ1 ≥ σ2`` (activation rate) and ``v1 ≥ v2`` (‖V‖).

Method (chosen, not tuned): one :func:`thermosgd.twolayer.engine.train` run
of the grid η × seeds on a learnable teacher task with a finite training set.
Replicas with the same seed share their initialization and their minibatch
sequence, so each seed is one paired comparison. The training error is
measured on the whole training set (``probe_size ≥ train_size``) every
``record_every`` steps; the "point" for a replica is the first recorded step at
which it is ``≤ ε`` (so it is resolved to ``record_every`` steps, and a lucky
fluctuation of the noisy 0-1 error counts as reaching ε). Activation rate and
‖V‖ are read at that step. Replicas that never reach ε are reported, and left
out of every mean and of every pair they belong to.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import xarray as xr

from thermosgd.errors import UsageError

__all__ = ["first_crossing", "at_first_crossing", "equal_error_summary", "equal_error_table"]


def first_crossing(values, target: float) -> np.ndarray:
    """Index of the first entry ``≤ target`` along the last axis, −1 if none.

    Args:
        values: ``(..., T)`` series (NaN never counts as reaching).
        target: threshold.

    Returns:
        ``(...)`` integer array.
    """
    v = np.asarray(values, dtype=float)
    hit = v <= target  # NaN compares False
    idx = np.argmax(hit, axis=-1)
    return np.where(hit.any(axis=-1), idx, -1)


def at_first_crossing(
    ds: xr.Dataset,
    target: float,
    *,
    metric: str = "error",
    read=("activation_rate", "v_norm", "w_norm", "bias_mean", "test_error"),
) -> xr.Dataset:
    """Values of ``read`` at the first recorded step where ``metric ≤ target``.

    Args:
        ds: a training dataset with dims (lr, batch_size, seed, step).
        target: ε.
        metric: the training-error variable.
        read: variables to read at the crossing (missing ones are skipped).

    Returns:
        Dataset (lr, batch_size, seed) with ``step_at_target`` (−1: never),
        ``reached`` and each variable of ``read`` (NaN where not reached).
    """
    if metric not in ds:
        raise UsageError(f"no variable {metric!r} in the results")
    da = ds[metric].transpose(..., "step")
    idx = first_crossing(da.values, target)
    if "diverged" in ds:
        idx = np.where(ds["diverged"].transpose(*da.dims[:-1]).values, -1, idx)
    reached = idx >= 0
    steps = ds["step"].values
    dims = da.dims[:-1]
    out = {"step_at_target": (dims, np.where(reached, steps[np.maximum(idx, 0)], -1)), "reached": (dims, reached)}
    for name in read:
        if name not in ds:
            continue
        v = ds[name].transpose(*dims, "step").values
        picked = np.take_along_axis(v, np.maximum(idx, 0)[..., None], axis=-1)[..., 0]
        out[name] = (dims, np.where(reached, picked, np.nan))
    res = xr.Dataset(out, coords={d: ds[d] for d in dims})
    res.attrs.update(target=float(target), metric=metric)
    return res


def _mean_se(v: np.ndarray) -> tuple[float, float, int]:
    v = v[np.isfinite(v)]
    n = v.size
    if n == 0:
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan"), n


def equal_error_summary(res: xr.Dataset) -> dict:
    """Per-η means at ε and the paper's pairwise claims over seeds.

    Args:
        res: :func:`at_first_crossing` result (a single batch size).

    Returns:
        dict with ``rows`` (per η: reached, step at ε ± s.e., η·step, σ, ‖V‖,
        test error, each mean ± s.e. over seeds) and ``pairs`` (for every
        ``η1 < η2``: seeds where both reached ε, fraction with ``σ1 ≥ σ2``,
        with ``v1 ≥ v2``, with both, and the mean paired differences ± s.e.).
    """
    res = res.squeeze("batch_size", drop=True) if "batch_size" in res.dims else res
    lrs = [float(v) for v in res["lr"].values]
    rows = []
    for lr in lrs:
        r = res.sel(lr=lr)
        reached = r["reached"].values
        step = np.where(reached, r["step_at_target"].values, np.nan).astype(float)
        row = {"lr": lr, "seeds": int(reached.size), "reached": int(reached.sum())}
        for name, v in (
            ("step", step),
            ("lr_times_step", lr * step),
            ("activation_rate", r["activation_rate"].values),
            ("v_norm", r["v_norm"].values),
        ):
            row[name], row[name + "_se"], _ = _mean_se(v)
        if "test_error" in r:
            row["test_error"], row["test_error_se"], _ = _mean_se(r["test_error"].values)
        rows.append(row)
    pairs = []
    for l1, l2 in itertools.combinations(sorted(lrs), 2):
        a, b = res.sel(lr=l1), res.sel(lr=l2)
        ok = a["reached"].values & b["reached"].values
        s1, s2 = a["activation_rate"].values[ok], b["activation_rate"].values[ok]
        v1, v2 = a["v_norm"].values[ok], b["v_norm"].values[ok]
        n = int(ok.sum())
        frac = lambda m: float(m.mean()) if n else float("nan")  # noqa: E731
        ds_m, ds_se, _ = _mean_se(s1 - s2)
        dv_m, dv_se, _ = _mean_se(v1 - v2)
        pairs.append(
            {
                "lr1": l1,
                "lr2": l2,
                "seeds": n,
                "frac_sigma1_ge_sigma2": frac(s1 >= s2),
                "frac_v1_ge_v2": frac(v1 >= v2),
                "frac_both": frac((s1 >= s2) & (v1 >= v2)),
                "sigma1_minus_sigma2": ds_m,
                "sigma1_minus_sigma2_se": ds_se,
                "v1_minus_v2": dv_m,
                "v1_minus_v2_se": dv_se,
            }
        )
    return {"target": res.attrs.get("target"), "metric": res.attrs.get("metric"), "rows": rows, "pairs": pairs}


def equal_error_table(summary: dict) -> str:
    """Markdown tables of :func:`equal_error_summary`."""
    eps = summary["target"]
    lines = [
        f"### At the first recorded step with training error ≤ {eps:g} (mean ± s.e. over seeds)",
        "",
        "| η | reached | step t* | η·t* | activation rate σ | ‖V‖ | test error |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summary["rows"]:
        te = f"{r['test_error']:.3f} ± {r['test_error_se']:.3f}" if "test_error" in r else "–"
        lines.append(
            f"| {r['lr']:g} | {r['reached']}/{r['seeds']} | {r['step']:.0f} ± {r['step_se']:.0f} | "
            f"{r['lr_times_step']:.2f} ± {r['lr_times_step_se']:.2f} | "
            f"{r['activation_rate']:.4f} ± {r['activation_rate_se']:.4f} "
            f"| {r['v_norm']:.4f} ± {r['v_norm_se']:.4f} | {te} |"
        )
    lines += [
        "",
        "### Paired over seeds (same init and data): the paper claims σ1 ≥ σ2 and v1 ≥ v2 for η1 < η2",
        "",
        "| η1 | η2 | seeds | frac σ1 ≥ σ2 | frac v1 ≥ v2 | frac both | σ1 − σ2 | v1 − v2 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in summary["pairs"]:
        lines.append(
            f"| {p['lr1']:g} | {p['lr2']:g} | {p['seeds']} | {p['frac_sigma1_ge_sigma2']:.2f} | "
            f"{p['frac_v1_ge_v2']:.2f} | {p['frac_both']:.2f} | "
            f"{p['sigma1_minus_sigma2']:+.4f} ± {p['sigma1_minus_sigma2_se']:.4f} | "
            f"{p['v1_minus_v2']:+.4f} ± {p['v1_minus_v2_se']:.4f} |"
        )
    return "\n".join(lines) + "\n"
