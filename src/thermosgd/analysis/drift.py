"""Estimators of the drift of b_i and V_i² beside the paper's thermophoretic prediction (Sec. 5, Eq. 27).

Pure functions of the datasets that :mod:`thermosgd.twolayer.drift` writes
(its docstring says precisely what is measured and compared): window slopes,
the split of the V² excess, log-log scaling fits with bootstrap intervals over
blocks, the summary and its table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from thermosgd import fmt
from thermosgd.errors import UsageError
from thermosgd.fitting import loglog_regression, percentile_interval

__all__ = ["window_drift", "excess_parts", "fit_scaling", "ScalingFit", "DriftSummary", "drift_summary", "drift_table"]


def window_drift(ds: xr.Dataset, var: str | xr.DataArray, window: tuple[float, float]) -> xr.DataArray:
    """Per-step change of ``var`` over a window of steps, by linear interpolation.

    Args:
        ds: a :func:`trajectory_drift` dataset.
        var: the name of a data variable with a ``step`` dim (e.g. ``"b"``), or such an array (a derived excess).
        window: ``(t1, t2)`` steps, t1 < t2.

    Returns:
        ``(var(t2) − var(t1)) / (t2 − t1)``, the step dim removed.
    """
    t1, t2 = window
    if not t2 > t1:
        raise UsageError(f"window must have t1 < t2, got {window}")
    da = ds[var] if isinstance(var, str) else var
    v = da.interp(step=[t1, t2])
    return (v.isel(step=1, drop=True) - v.isel(step=0, drop=True)) / (t2 - t1)


def excess_parts(traj: xr.Dataset) -> xr.Dataset:
    """The noise-induced excess of the ensemble means over the reference, split into labelled pieces.

    Per (lr, batch_size, block, step, unit), with P replicas per block:

    * ``b``: ``E[b] − b_ref`` (a pure shift of the mean);
    * ``V2``: ``E[V²] − V_ref²`` (total), the sum of
    * ``V2_var``: ``var(V)`` over the block's replicas (unbiased): the accumulated
      Itô/diffusion piece, ≥ 0 by construction, and
    * ``V2_shift``: ``V2 − V2_var``, an unbiased estimate of ``E[V]² − V_ref²``
      ≈ ``2|V| · (shift of |V|)``: the piece comparable with the paper's drift of V².
    """
    P = traj.attrs.get("per_block", 2)
    var = (traj["V2"] - traj["V"] ** 2) * (P / (P - 1) if P > 1 else np.nan)
    total = traj["V2"] - traj["V2_ref"]
    return xr.Dataset({"b": traj["b"] - traj["b_ref"], "V2": total, "V2_var": var, "V2_shift": total - var})


def _window_mean(da: xr.DataArray, window) -> xr.DataArray:
    """Time average over the window (trapezoid on the recorded steps, interpolated ends)."""
    t1, t2 = window
    steps = da["step"].values
    grid = np.unique(np.concatenate([[t1, t2], steps[(steps > t1) & (steps < t2)]]))
    v = da.interp(step=grid)
    return v.integrate("step") / (t2 - t1)


# --------------------------------------------------------------------------
# Scaling fit and summary
# --------------------------------------------------------------------------


@dataclass
class ScalingFit:
    """``|d| = c · η^α · |B|^(−β)`` fitted by least squares on logs.

    Attributes:
        alpha, beta: point estimates. alpha_ci, beta_ci: percentile intervals.
        sign: common sign of the values (0 if mixed: no fit).
        valid_fraction: share of bootstrap draws with one common sign (used for the CI).
    """

    alpha: float
    beta: float
    alpha_ci: tuple[float, float]
    beta_ci: tuple[float, float]
    sign: int
    valid_fraction: float
    level: float = 0.95
    n_boot: int = 0

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def fit_scaling(lr, bs, values, draws=None, level: float = 0.95) -> ScalingFit:
    """Fit ``|value| ∝ η^α |B|^(−β)`` over grid points.

    Args:
        lr, bs: ``(n,)`` η and |B| of each point (at least 3 points, 2 distinct
            values of each for both exponents; otherwise the missing one is NaN).
        values: ``(n,)`` estimates; they must share one sign.
        draws: optional ``(n_boot, n)`` bootstrap replicates of ``values``
            (from resampling blocks): the interval is the percentile interval of
            the refitted exponents over draws that keep one common sign.
        level: interval level.

    Returns:
        :class:`ScalingFit` (exponents NaN when the signs are mixed).
    """
    lr, bs, values = (np.asarray(v, dtype=float) for v in (lr, bs, values))
    nan = float("nan")
    signs = np.sign(values)
    if len(values) < 3 or not np.all(signs == signs[0]) or signs[0] == 0:
        return ScalingFit(nan, nan, (nan, nan), (nan, nan), 0, 0.0, level, 0)
    vary_lr, vary_bs = np.unique(lr).size > 1, np.unique(bs).size > 1
    lr_fit = lr if vary_lr else np.ones_like(lr)
    bs_fit = bs if vary_bs else np.ones_like(bs)
    alpha, beta = loglog_regression(lr_fit, bs_fit, values)
    a_ci = b_ci = (nan, nan)
    valid = 0.0
    n_boot = 0 if draws is None else len(draws)
    if n_boot:
        draws = np.asarray(draws, dtype=float)
        ok = np.all(np.sign(draws) == signs[0], axis=1)
        valid = float(ok.mean())
        if ok.sum() >= 10:
            ab = np.array([loglog_regression(lr_fit, bs_fit, d) for d in draws[ok]])
            a_ci = percentile_interval(ab[:, 0], level)
            b_ci = percentile_interval(ab[:, 1], level)
    if not vary_lr:
        alpha, a_ci = nan, (nan, nan)
    if not vary_bs:
        beta, b_ci = nan, (nan, nan)
    return ScalingFit(float(alpha), float(beta), a_ci, b_ci, int(signs[0]), valid, level, n_boot)


@dataclass
class DriftSummary:
    """Tables of the drift experiment (see :func:`drift_summary`)."""

    one_step: list[dict] = field(default_factory=list)
    windows: list[dict] = field(default_factory=list)
    fits: dict = field(default_factory=dict)
    err2: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "one_step": self.one_step,
            "windows": self.windows,
            "fits": self.fits,
            "err2": self.err2,
            "notes": self.notes,
        }


def _ratio(a, b):
    return float(a / b) if b != 0 and np.isfinite(a) and np.isfinite(b) else float("nan")


def drift_summary(one: xr.Dataset, traj: xr.Dataset, *, windows=None, n_boot: int = 500, seed: int = 0) -> DriftSummary:
    """Measured vs predicted drift: one-step pieces, window drifts, exponents, err2.

    Args:
        one: :func:`one_step_drift` result (at the shared initialization).
        traj: :func:`trajectory_drift` result.
        windows: ``{"early": (t1, t2), "late": (t1, t2)}`` in steps; default the
            first and last quarter of the run.
        n_boot: bootstrap resamples over blocks for the exponent intervals.
        seed: bootstrap seed.

    Returns:
        :class:`DriftSummary`; every drift is per SGD step, averaged over units.
    """
    T = float(traj["step"].values[-1])
    windows = windows or {"early": (0.0, T / 4), "late": (3 * T / 4, T)}
    rng = np.random.default_rng(seed)
    Q = traj.sizes["block"]
    boot_idx = rng.integers(0, Q, size=(n_boot, Q))  # drawn first: the one-step draws follow on the same rng
    s = DriftSummary()
    lrs, bss = traj["lr"].values, traj["batch_size"].values
    grid = [(float(a), int(c)) for a in lrs for c in bss]
    glr = np.array([g[0] for g in grid])
    gbs = np.array([g[1] for g in grid])

    s.one_step = _one_step_rows(one, grid)
    v2 = np.array([row["V2_excess"] for row in s.one_step])
    v2se = np.array([row["V2_excess_se"] for row in s.one_step])
    # Clones of different grid points use independent minibatches: parametric draws.
    draws = v2 + v2se * rng.standard_normal((n_boot, len(v2)))
    s.fits["one_step_V2_excess"] = fit_scaling(glr, gbs, v2, draws).to_dict()

    parts = excess_parts(traj)
    for q in ("b", "V2", "V2_var", "V2_shift"):
        for name, win in windows.items():
            _window_summary(s, traj, parts[q], q, name, win, grid, boot_idx)

    e2 = traj["err2"].mean("block")
    for name, win in windows.items():
        w = _window_mean(e2, win)
        s.err2[name] = {f"lr={lr:g},B={bs}": float(w.sel(lr=lr, batch_size=bs)) for lr, bs in grid}
    s.err2["initial"] = float(e2.isel(step=0).mean())
    s.notes = _unfittable(lrs, bss) + list(_NOTES)
    return s


_NOTES = (
    "all drifts are per SGD step, averaged over hidden units; measured = slope of "
    "E[q]_SGD - q_ref (mean-gradient reference on the same samples) over the window",
    "predicted = paper's J_t/rho projected on b and V^2 (psi as printed, with its factor 1/2; "
    "Eq. 10 without it would double the prediction), err2 measured",
    "one step: b_excess should be 0 (unbiased noise), V2_excess should equal the Ito term eta^2 var/|B| (> 0)",
    "trajectories: V2 = V2_var (replica variance of V: accumulated Ito/diffusion piece) + V2_shift "
    "(E[V]^2 - V_ref^2: the mean-shift piece, the one comparable with the paper's drift of V^2)",
)


def _one_step_rows(one: xr.Dataset, grid: list[tuple[float, int]]) -> list[dict]:
    """One row per grid point of the one-step drift at the initialization, averaged over units."""
    um = one.mean("unit")
    N = one.sizes["unit"]
    rows = []
    for lr, bs in grid:
        r = um.sel(lr=lr, batch_size=bs)
        se = lambda k: float(np.sqrt((one[k].sel(lr=lr, batch_size=bs) ** 2).sum()) / N)  # noqa: E731
        rows.append(
            {
                "lr": lr,
                "batch_size": bs,
                "eta2_over_B": lr**2 / bs,
                "b_step": float(r["b_step"]),
                "b_gradient": float(r["b_gradient"]),
                "b_excess": float(r["b_excess"]),
                "b_excess_se": se("b_excess_se"),
                "b_predicted": float(r["b_predicted"]),
                "V2_step": float(r["V2_step"]),
                "V2_gradient": float(r["V2_gradient"]),
                "V2_excess": float(r["V2_excess"]),
                "V2_excess_se": se("V2_excess_se"),
                "V2_ito": float(r["V2_ito"]),
                "V2_predicted": float(r["V2_predicted"]),
                "V2_excess_over_ito": _ratio(float(r["V2_excess"]), float(r["V2_ito"])),
                "V2_excess_over_predicted": _ratio(float(r["V2_excess"]), float(r["V2_predicted"])),
            }
        )
    return rows


def _window_summary(
    s: DriftSummary, traj: xr.Dataset, part: xr.DataArray, q: str, name: str, win, grid, boot_idx
) -> None:
    """Quantity ``q``'s measured and predicted drift over window ``win`` (named ``name``): one row per
    grid point into ``s.windows``, and its η, |B| exponent fits (bootstrap over blocks) into ``s.fits``."""
    Q = traj.sizes["block"]
    glr = np.array([g[0] for g in grid])
    gbs = np.array([g[1] for g in grid])
    pred = traj["b_predicted" if q == "b" else "V2_predicted"].mean("unit")
    d = window_drift(traj, part.mean("unit"), win)  # (lr, bs, block)
    p = _window_mean(pred, win)
    dm, pm = d.mean("block"), p.mean("block")
    dse = d.std("block", ddof=1) / math.sqrt(Q)
    per_unit = window_drift(traj, part.mean("block"), win)
    for lr, bs in grid:
        m, e = float(dm.sel(lr=lr, batch_size=bs)), float(dse.sel(lr=lr, batch_size=bs))
        # The variance piece is diffusion, not a drift: the paper predicts no drift for it.
        pv = float(pm.sel(lr=lr, batch_size=bs)) if q != "V2_var" else float("nan")
        s.windows.append(
            {
                "quantity": q,
                "window": name,
                "steps": list(win),
                "lr": lr,
                "batch_size": bs,
                "measured": m,
                "measured_se": e,
                "z": m / e if e > 0 else float("nan"),
                "predicted": pv,
                "measured_over_predicted": _ratio(m, pv),
                "units_negative": float((per_unit.sel(lr=lr, batch_size=bs) < 0).mean()),
            }
        )
    vals = np.array([float(dm.sel(lr=lr, batch_size=bs)) for lr, bs in grid])
    dv = d.values.reshape(len(grid), Q)  # (grid, block), grid order lr-major
    draws = dv[:, boot_idx].mean(-1).T  # (n_boot, grid)
    s.fits[f"{q}_{name}"] = fit_scaling(glr, gbs, vals, draws).to_dict()
    if q in ("b", "V2_shift"):
        # The prediction is a deterministic function of the recorded states: no interval.
        pvals = np.array([float(pm.sel(lr=lr, batch_size=bs)) for lr, bs in grid])
        s.fits[f"{q}_{name}_predicted"] = fit_scaling(glr, gbs, pvals).to_dict()


def _unfittable(lrs, bss) -> list[str]:
    """Notes on the exponents a grid cannot determine (an exponent needs two values of its parameter)."""
    notes = []
    if len(set(map(float, lrs))) < 2:
        notes.append("alpha (the eta exponent) cannot be fitted from one value of eta: give at least two --lr values")
    if len(set(map(int, bss))) < 2:
        notes.append(
            "beta (the |B| exponent) cannot be fitted from one value of |B|: give at least two --batch-size values"
        )
    if len(lrs) * len(bss) < 3:
        notes.append("no exponent is fitted from fewer than 3 (eta, |B|) points")
    return notes


def _exponent_cells(f: dict, key: str, missing: str | None) -> str:
    """Table cells ``value | CI`` of one fitted exponent, or why there is none."""
    v, ci = f[key], f[key + "_ci"]
    if missing or not math.isfinite(v):
        return f"n/a ({missing or 'the values differ in sign'}) | "
    d = fmt.width_decimals(ci[0], ci[1])
    return f"{fmt.fixed(v, d)} | {fmt.interval(ci[0], ci[1], d)}"


def _fmt(v, se=None):
    if se is None:
        return f"{v:+.3g}"
    return f"{v:+.3g} ± {se:.2g}"


def drift_table(s: DriftSummary) -> str:
    """Markdown tables of a :class:`DriftSummary`."""
    lines = [
        "### One SGD step from the shared initialization (per step, mean over units)",
        "",
        "| η | \\|B\\| | E[Δb] | −η∂_bL | excess b | paper b | E[ΔV²] | gradient part | excess V² "
        "| Itô η²var/\\|B\\| | excess/Itô | paper V² | excess/paper |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in s.one_step:
        lines.append(
            f"| {r['lr']:g} | {r['batch_size']} | {_fmt(r['b_step'])} | {_fmt(r['b_gradient'])} | "
            f"{_fmt(r['b_excess'], r['b_excess_se'])} | {_fmt(r['b_predicted'])} | {_fmt(r['V2_step'])} | "
            f"{_fmt(r['V2_gradient'])} | {_fmt(r['V2_excess'], r['V2_excess_se'])} | {_fmt(r['V2_ito'])} | "
            f"{r['V2_excess_over_ito']:.3f} | {_fmt(r['V2_predicted'])} | {r['V2_excess_over_predicted']:+.3g} |"
        )
    lines += [
        "",
        "### Whole trajectories: noise-induced drift of the ensemble mean per step "
        "(E[q]_SGD − q_ref; ± s.e. over blocks)",
        "",
        "| q | window (steps) | η | \\|B\\| | measured | z | units < 0 | paper | measured/paper | err2 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in s.windows:
        e2 = s.err2[r["window"]][f"lr={r['lr']:g},B={r['batch_size']}"]
        lines.append(
            f"| {r['quantity']} | {r['window']} {r['steps'][0]:g}–{r['steps'][1]:g} | {r['lr']:g} | "
            f"{r['batch_size']} | {_fmt(r['measured'], r['measured_se'])} | {r['z']:+.1f} | "
            f"{r['units_negative']:.0%} | "
            f"{_fmt(r['predicted'])} | {r['measured_over_predicted']:+.3g} | {e2:.4f} |"
        )
    lines += [
        "",
        "### Scaling |drift| ∝ η^α |B|^(−β) (paper: α = 2, β = 1)",
        "",
        "| quantity | α | 95% CI | β | 95% CI | sign | bootstrap draws with one sign |",
        "|---|---|---|---|---|---|---|",
    ]
    few = "fewer than 3 grid points" if len(s.one_step) < 3 else None
    missing_alpha = "one η: cannot be fitted" if len({r["lr"] for r in s.one_step}) < 2 else few
    missing_beta = "one \\|B\\|: cannot be fitted" if len({r["batch_size"] for r in s.one_step}) < 2 else few
    for k, f in s.fits.items():
        lines.append(
            f"| {k} | {_exponent_cells(f, 'alpha', missing_alpha)} | {_exponent_cells(f, 'beta', missing_beta)} | "
            f"{f['sign']:+d} | {f['valid_fraction']:.2f} |"
        )
    lines += [
        "",
        f"err2 = E[(p−y)²]: initial {s.err2['initial']:.4f}; "
        + "; ".join(f"{w} mean over grid {np.mean(list(v.values())):.4f}" for w, v in s.err2.items() if w != "initial"),
        "",
    ]
    lines += [f"- {n}" for n in s.notes]
    return "\n".join(lines) + "\n"
