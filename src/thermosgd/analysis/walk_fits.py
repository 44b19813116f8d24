"""Fits to the random walk's measurements (Sec. 3): the stationary exponent, the η exponent, the ratios.

Measurements in, numbers out: every input is a count or a position from
:func:`~thermosgd.walk.simulate.simulate` or a value of a formula in
:mod:`thermosgd.walk.theory`; neither is adjusted toward the other.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from thermosgd.errors import UsageError
from thermosgd.fitting import weighted_slope
from thermosgd.walk import theory
from thermosgd.walk.simulate import WalkResult

__all__ = ["fit_stationary_exponent", "flux_comparison", "flux_exponent"]

DTYPE = torch.float64


def _ratio(m: float, m_se: float, p: float) -> tuple[float, float]:
    return (m / p, abs(m_se / p)) if p != 0 else (float("nan"), float("nan"))


def flux_comparison(
    offsets: torch.Tensor,
    measured: torch.Tensor,
    stderr: torch.Tensor,
    mean: float,
    mean_se: float,
    eq: torch.Tensor,
    fp: torch.Tensor,
) -> dict:
    """Measured plane fluxes beside Eq. 10 and the Fokker-Planck prediction, with the ratios.

    Args:
        offsets: Plane offsets along the normal, ``(K,)``.
        measured: Measured flux per plane, ``(K,)`` (probability per step and unit area).
        stderr: Its standard error, ``(K,)``.
        mean: The plane-averaged measured flux; mean_se: its standard error.
        eq: Eq. 10's flux per plane, ``(K,)``; fp: the Fokker-Planck flux, ``(K,)``.

    Returns:
        JSON-ready dict: the per-plane lists, the plane means and the ratios
        measured / predicted of the means with their standard errors.
    """
    r_eq, r_eq_se = _ratio(mean, mean_se, float(eq.mean()))
    r_fp, r_fp_se = _ratio(mean, mean_se, float(fp.mean()))
    return {
        "offsets": offsets.tolist(),
        "measured": measured.tolist(),
        "stderr": stderr.tolist(),
        "eq10": eq.tolist(),
        "fokker_planck": fp.tolist(),
        "mean_measured": mean,
        "mean_stderr": mean_se,
        "mean_eq10": float(eq.mean()),
        "mean_fokker_planck": float(fp.mean()),
        "ratio_eq10": r_eq,
        "ratio_eq10_stderr": r_eq_se,
        "ratio_fokker_planck": r_fp,
        "ratio_fokker_planck_stderr": r_fp_se,
    }


def flux_exponent(etas, means, stderrs) -> tuple[float, float]:
    """Exponent p of ``|J| ∝ η^p`` by weighted least squares on log-log axes, and its standard error.

    Args:
        etas: Step sizes, ``(n,)``; means: measured fluxes, ``(n,)``; stderrs: their errors, ``(n,)``.

    Returns:
        ``(p, se)``; both NaN when some flux is exactly zero (a tiny run), where the exponent is undefined.
    """
    m = np.abs(np.asarray(means, dtype=float))
    if not np.all(m > 0):
        return float("nan"), float("nan")
    sy = np.asarray(stderrs, dtype=float) / m
    return weighted_slope(np.log(np.asarray(etas, dtype=float)), np.log(m), sy)


def _check_box(result: WalkResult, g, lo: float, hi: float, since: int, bins: int):
    """The fit range inside the walls, bin centers, g there, and the pooled snapshots ``(R, N)``."""
    grid = torch.linspace(lo, hi, 2001, dtype=DTYPE)
    gg = theory.jacobian(g, grid[:, None])[0][:, 0]
    jump = result.eta * float(gg.abs().max())
    a, b = lo + jump, hi - jump
    if b - a < (hi - lo) / 4:
        raise UsageError(f"the box [{lo}, {hi}] is too small for jumps of {jump:.3g} to fit a stationary density")
    width = (b - a) / bins
    centers = a + width * (torch.arange(bins, dtype=DTYPE) + 0.5)
    g_c = theory.jacobian(g, centers[:, None])[0][:, 0]
    if float(g_c.max() / g_c.min()) < 1.05:
        raise UsageError("g is nearly constant in the box: the stationary exponent is undefined")
    keep = result.record_steps >= since
    if not bool(keep.any()):
        raise UsageError(f"no snapshot at or after step {since}")
    return a, b, width, centers, g_c, result.snapshots[keep][..., 0].to(DTYPE)


def fit_stationary_exponent(
    result: WalkResult, g, lo: float, hi: float, *, since: int, bins: int = 40, batches: int = 8
) -> dict:
    """Fit rho ∝ g^-k to the snapshots of a 1-D walk in the reflecting box [lo, hi].

    Snapshots at steps >= ``since`` are pooled. Bins within one jump
    (``eta * max g``) of a wall are left out (the walls distort the density
    there). k is also fitted per batch of particles; its error is the spread
    over batches.

    Args:
        result: A :class:`~thermosgd.walk.simulate.WalkResult` in ``Reflect(lo, hi)``, D = 1.
        g: The walk's noise amplitude.
        lo, hi: The box.
        since: First step to pool.
        bins: Histogram bins inside the fit range.
        batches: Particle batches for the error bar.

    Returns:
        Dict with ``k_fit``, ``k_stderr``, ``k_eq10`` (the k of Eq. 10's zero flux,
        1 for any g), ``k_fokker_planck`` (2), ``ratio_eq10``, and the density
        (``centers``, ``rho``, ``g``).

    Raises:
        UsageError: The box is too small for the jumps, g is nearly constant, or
            no snapshot was pooled.
    """
    a, b, width, centers, g_c, snaps = _check_box(result, g, lo, hi, since, bins)
    x = torch.log(g_c)

    def fit(s):
        counts = torch.stack([torch.histc(r, bins=bins, min=a, max=b) for r in s]).sum(0)
        rho = counts / (s.numel() * width)
        ok = counts > 0
        xc = x[ok] - x[ok].mean()
        y = torch.log(rho[ok])
        # Same least-squares slope as fitting.weighted_slope (equal weights), kept in torch:
        # NumPy's summation order differs in the last bits, and results stay bit-identical.
        return float(-(xc * (y - y.mean())).sum() / (xc * xc).sum()), rho

    batches = max(2, min(batches, snaps.shape[1]))
    ks = [fit(s)[0] for s in torch.tensor_split(snaps, batches, dim=1)]
    k_all, rho = fit(snaps)
    fine = torch.linspace(a, b, 4001, dtype=DTYPE)
    k_eq10 = theory.stationary_exponent(g, fine, theory="eq10")
    return {
        "box": [lo, hi],
        "eta": result.eta,
        "particles": result.particles,
        "pooled_from_step": since,
        "fit_range": [a, b],
        "k_fit": k_all,
        "k_stderr": float(np.std(ks, ddof=1) / math.sqrt(batches)),
        "k_eq10": k_eq10,
        "k_fokker_planck": theory.stationary_exponent(g, fine, theory="fokker_planck"),
        "ratio_eq10": k_all / k_eq10,
        "centers": centers.tolist(),
        "rho": rho.tolist(),
        "g": g_c.tolist(),
    }
