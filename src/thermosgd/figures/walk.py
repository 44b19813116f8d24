"""Figures of the random-walk lab (Sec. 3). Plots only: reads the dicts of
:mod:`thermosgd.reproduce.walk_suite`, never simulates."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from thermosgd.figures.save import save_figure

__all__ = ["plot_density_over_time", "plot_flux", "plot_stationary", "plot_eta_scaling", "write_figures"]


def _save(fig, path: Path) -> list[str]:
    return [str(p) for p in save_figure(fig, Path(path).with_suffix(""))]


def plot_density_over_time(centers, times, rho_t, path: Path, *, title: str = "") -> list[str]:
    """Density histograms at several steps.

    Args:
        centers: Bin centers ``(B,)``. times: Steps ``(R,)``. rho_t: Densities ``(R, B)``.
        path: Output path without extension; writes .png and .pdf.
    """
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    colors = matplotlib.colormaps["viridis"](np.linspace(0, 1, len(times)))
    for t, rho, col in zip(times, rho_t, colors):
        ax.plot(centers, rho, color=col, label=f"t = {t}")
    ax.set_xlabel("q")
    ax.set_ylabel("density ρ(q, t)")
    ax.set_title(title or "density over time")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_flux(suite: dict, path: Path) -> list[str]:
    """Measured plane fluxes next to Eq. 10 and Fokker-Planck, thermophoretic (top) and diffusive (bottom)."""
    cases = suite["cases"]
    fig = Figure(figsize=(4 * len(cases), 6))
    axes = fig.subplots(2, len(cases), squeeze=False)
    for j, c in enumerate(cases):
        for i, (key, part) in enumerate(
            (("thermophoretic", c["thermophoretic"]["main"]), ("diffusive", c["diffusive"]))
        ):
            ax = axes[i, j]
            x = np.asarray(part["offsets"])
            ax.errorbar(x, part["measured"], yerr=part["stderr"], fmt="o", color="k", label="simulation")
            order = np.argsort(x)
            ax.plot(x[order], np.asarray(part["eq10"])[order], "s--", color="C3", label="Eq. 10 (paper)")
            ax.plot(x[order], np.asarray(part["fokker_planck"])[order], "^:", color="C0", label="Fokker-Planck")
            ax.axhline(0, color="0.8", lw=0.8)
            ax.set_title(f"{c['name']}: {key}, η = {part['eta']}", fontsize=9)
            ax.set_xlabel("plane offset along g")
            if j == 0:
                ax.set_ylabel("flux J per step")
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_stationary(suite: dict, path: Path) -> list[str]:
    """Stationary density against g on log-log axes, with the slopes -1 (Eq. 10) and -2 (Fokker-Planck)."""
    cases = [c for c in suite["cases"] if c["stationary"]]
    fig = Figure(figsize=(4 * max(1, len(cases)), 3.5))
    axes = fig.subplots(1, max(1, len(cases)), squeeze=False)
    for ax, c in zip(axes[0], cases):
        st = c["stationary"]
        g, rho = np.asarray(st["g"]), np.asarray(st["rho"])
        ok = rho > 0
        ax.loglog(
            g[ok], rho[ok], "o", color="k", ms=3, label=f"simulation, k = {st['k_fit']:.2f} ± {st['k_stderr']:.2f}"
        )
        anchor_g, anchor_rho = np.exp(np.mean(np.log(g[ok]))), np.exp(np.mean(np.log(rho[ok])))
        gs = np.linspace(g.min(), g.max(), 50)
        for k, style, name in ((st["k_eq10"], "--", "Eq. 10"), (st["k_fokker_planck"], ":", "Fokker-Planck")):
            ax.loglog(gs, anchor_rho * (gs / anchor_g) ** (-k), style, label=f"{name}: k = {k:.0f}")
        ax.set_xlabel("g(q)")
        ax.set_ylabel("stationary ρ")
        ax.set_title(f"{c['name']}, reflecting box, η = {st['eta']}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_eta_scaling(suite: dict, path: Path) -> list[str]:
    """|thermophoretic flux| (plane average) against eta on log-log axes, with Eq. 10's eta^2."""
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    for i, c in enumerate(suite["cases"]):
        sc = c["thermophoretic"]
        eta = np.array([b["eta"] for b in sc["by_eta"]])
        m = np.abs([b["mean_measured"] for b in sc["by_eta"]])
        e = np.array([b["mean_stderr"] for b in sc["by_eta"]])
        p = np.abs([b["mean_eq10"] for b in sc["by_eta"]])
        ax.errorbar(
            eta,
            m,
            yerr=e,
            fmt="o",
            color=f"C{i}",
            label=f"{c['name']}: p = {sc['exponent']:.2f} ± {sc['exponent_stderr']:.2f}",
        )
        ax.plot(eta, p, "--", color=f"C{i}", alpha=0.7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    etas = sorted({float(b["eta"]) for c in suite["cases"] for b in c["thermophoretic"]["by_eta"]})
    # Ticks at the η run, written plainly: log-axis minor labels (3×10⁻¹, 4×10⁻¹) overlap at page size.
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(etas, [f"{v:g}" for v in etas])
    ax.set_xlabel("η")
    ax.set_ylabel("|J| thermophoretic (dashed: Eq. 10)")
    ax.legend(fontsize=7)
    return _save(fig, path)


def write_figures(suite: dict, fig_dir: Path) -> list[str]:
    """All walk figures into ``fig_dir``; returns the paths written."""
    fig_dir = Path(fig_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    files = []
    first = next((c for c in suite["cases"] if c["stationary"]), None)
    if first is not None:
        st = first["stationary"]
        files += plot_density_over_time(
            st["time_centers"],
            st["times"],
            st["rho_t"],
            fig_dir / "walk_density",
            title=f"{first['name']} (g = {first['g']}) in a reflecting box",
        )
    files += plot_flux(suite, fig_dir / "walk_flux")
    files += plot_stationary(suite, fig_dir / "walk_stationary")
    files += plot_eta_scaling(suite, fig_dir / "walk_eta_scaling")
    return files
