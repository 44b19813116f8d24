"""The walk suite: (a)-(d) of :mod:`thermosgd.walk.compare` for every case, measured next to Eq. 10.

Simulates with :mod:`thermosgd.walk`, predicts with :mod:`thermosgd.walk.theory`
and fits with :mod:`thermosgd.analysis.walk_fits`; :mod:`thermosgd.reproduce.walk`
writes the report. Every random draw comes from a named stream of
:mod:`thermosgd.seeds`.
"""

from __future__ import annotations

from typing import Any

import torch

from thermosgd import presets
from thermosgd.analysis.walk_fits import fit_stationary_exponent, flux_comparison, flux_exponent
from thermosgd.errors import UsageError
from thermosgd.seeds import derive_seed, generator, stream
from thermosgd.walk import theory
from thermosgd.walk.compare import CASES, DTYPE, Case, corners, geometry, measure_plane_flux, plane_points, predict
from thermosgd.walk.expr import parse_g
from thermosgd.walk.simulate import Reflect, simulate

__all__ = [
    "thermophoretic_flux",
    "diffusive_flux",
    "stationary_fit",
    "local_thermophoretic_flux",
    "run_case",
    "run_suite",
]


def thermophoretic_flux(case: Case, *, particles: int, seed: int = 0, noise: str = "binary") -> dict:
    """(a) and (d): thermophoretic flux at uniform density for ``case.etas`` (and ``case.eta``).

    Returns:
        Dict with per-eta plane fluxes, Eq. 10 and Fokker-Planck predictions, the
        ratios measured / predicted of the plane-averaged flux, and the fitted
        exponent p of ``|J| ∝ eta^p`` (weighted least squares on log-log axes).
    """
    g = parse_g(case.g, case.dim)
    etas = sorted(set(case.etas) | {case.eta})
    point, normal, offsets, _ = geometry(case, g, etas)
    rho0 = 1.0 / (2 * case.half) ** case.dim
    pts, w = plane_points(point, normal, offsets, case.patch)
    by_eta = []
    for i, eta in enumerate(etas):
        m = measure_plane_flux(
            g,
            point,
            normal,
            offsets,
            eta=eta,
            particles=particles,
            half=case.half,
            patch=None if case.dim == 1 else case.patch,
            seed=derive_seed(seed, stream("walk.thermophoretic"), i),
            noise=noise,
        )
        pred = predict(
            g,
            pts,
            w,
            normal,
            lambda x: torch.full((x.shape[0],), rho0, dtype=DTYPE),
            lambda x: torch.zeros_like(x),
            eta,
        )
        eq, fp = pred["eq10_thermophoretic"], pred["fp_thermophoretic"]
        by_eta.append(
            {
                "eta": eta,
                **flux_comparison(offsets, m["flux"], m["stderr"], float(m["mean"]), float(m["mean_stderr"]), eq, fp),
            }
        )
    slope, slope_se = flux_exponent(
        [b["eta"] for b in by_eta], [b["mean_measured"] for b in by_eta], [b["mean_stderr"] for b in by_eta]
    )
    main = next(b for b in by_eta if b["eta"] == case.eta)
    return {"main": main, "by_eta": by_eta, "exponent": slope, "exponent_stderr": slope_se, "exponent_eq10": 2.0}


def diffusive_flux(case: Case, *, particles: int, seed: int = 0, noise: str = "binary") -> dict:
    """(b): diffusive flux under the density ``rho0 (1 + beta n.(q - point))``.

    Measured diffusive flux per plane = J(gradient) - (rho_plane / rho0) J(uniform),
    both counted; predicted = the diffusion term of Eq. 10 (and of Fokker-Planck).
    """
    g = parse_g(case.g, case.dim)
    point, normal, offsets, _ = geometry(case, g, [case.eta])
    dim = case.dim
    rho0 = 1.0 / (2 * case.half) ** dim
    beta = 0.5 / (case.half * float(normal.abs().sum()))
    patch = None if dim == 1 else case.patch
    common: dict[str, Any] = dict(eta=case.eta, particles=particles, half=case.half, patch=patch, noise=noise)
    flat = measure_plane_flux(
        g, point, normal, offsets, seed=derive_seed(seed, stream("walk.diffusive_uniform")), **common
    )
    grad = measure_plane_flux(
        g, point, normal, offsets, slope=beta, seed=derive_seed(seed, stream("walk.diffusive_gradient")), **common
    )
    scale = 1 + beta * offsets
    measured = grad["flux"] - scale * flat["flux"]
    stderr = torch.sqrt(grad["stderr"] ** 2 + (scale * flat["stderr"]) ** 2)
    mean_m = float(measured.mean())
    mean_se = float(torch.sqrt(grad["mean_stderr"] ** 2 + (flat["mean_stderr"] * scale.mean()) ** 2))
    pts, w = plane_points(point, normal, offsets, case.patch)
    pred = predict(
        g,
        pts,
        w,
        normal,
        lambda x: rho0 * (1 + beta * ((x - point) @ normal)),
        lambda x: (rho0 * beta * normal).expand_as(x),
        case.eta,
    )
    eq, fp = pred["eq10_diffusion"], pred["fp_diffusion"]
    return {
        "eta": case.eta,
        "relative_gradient": beta,
        **flux_comparison(offsets, measured, stderr, mean_m, mean_se, eq, fp),
    }


def stationary_fit(
    g,
    lo: float,
    hi: float,
    *,
    eta: float,
    particles: int,
    steps: int,
    seed: int = 0,
    every: int = 10,
    noise: str = "binary",
    early: tuple[int, ...] = (0, 5, 20, 80, 320),
) -> dict:
    """(c): walk from uniform positions in the reflecting box [lo, hi], then :func:`fit_stationary_exponent`.

    Snapshots every ``every`` steps in the second half are pooled; the ones at
    ``early`` steps give the density over time (``times``, ``time_centers``, ``rho_t``).
    """
    q0 = lo + (hi - lo) * torch.rand(particles, 1, generator=generator(seed, stream("walk.start")), dtype=DTYPE)
    burn = steps // 2
    record = lambda t: t in early or (t >= burn and (t - burn) % every == 0)  # noqa: E731
    walk_seed = derive_seed(seed, stream("walk.steps"))
    res = simulate(g, q0, eta, steps, domain=Reflect(lo, hi), seed=walk_seed, noise=noise, record=record)
    out = fit_stationary_exponent(res, g, lo, hi, since=burn)
    shown = [i for i, t in enumerate(res.record_steps.tolist()) if t in early or t == steps]
    centers, rho_t = res.density_over_time(60, lo, hi)
    out.update(
        steps=steps,
        times=[int(res.record_steps[i]) for i in shown],
        time_centers=centers.tolist(),
        rho_t=rho_t[shown].tolist(),
    )
    return out


def local_thermophoretic_flux(
    g_expr: str,
    dim: int,
    point,
    eta: float,
    *,
    particles: int,
    max_half: float = 1.0,
    seed: int = 0,
    noise: str = "binary",
) -> dict:
    """(a) at one point for the CLI: picks a uniform region around ``point`` that holds the planes.

    Returns:
        The ``main`` entry of :func:`thermophoretic_flux` plus ``point`` and ``half``.

    Raises:
        UsageError: No region of half-width <= ``max_half`` is wide enough for the jumps.
    """
    g = parse_g(g_expr, dim)
    p = torch.tensor(list(point), dtype=DTYPE)
    half = max_half
    gmax = float(torch.linalg.vector_norm(theory.jacobian(g, p[None, :] + half * corners(dim))[0], dim=1).max())
    jump = eta * gmax * 1.05
    patch = 0.25 * half
    need = 1.5 * jump if dim == 1 else 1.1 * (jump + patch)
    if need > half:
        raise UsageError(
            f"jumps of about {jump:.3g} do not fit a uniform region of half-width {half:.3g} around {list(point)}"
        )
    case = Case("local", g_expr, dim, tuple(point), half, eta, (eta,), patch=patch, offsets=(0.0,))
    res = thermophoretic_flux(case, particles=particles, seed=seed, noise=noise)
    return {"point": list(point), "half": half, **res["main"]}


def run_case(case: Case, *, sizes: dict, seed: int = 0) -> dict:
    """(a)-(d) for one case at the given sizes (see the ``walk`` entry of :mod:`thermosgd.presets`)."""
    n_flux = sizes["flux_particles"] * (2 if case.dim > 1 else 1)
    out = {
        "name": case.name,
        "g": case.g,
        "dim": case.dim,
        "shared": True,
        "noise": "binary",
        "point": list(case.point),
    }
    out["thermophoretic"] = thermophoretic_flux(case, particles=n_flux, seed=seed)
    out["diffusive"] = diffusive_flux(case, particles=n_flux, seed=seed)
    if case.box is not None and case.dim == 1:
        g = parse_g(case.g, 1)
        out["stationary"] = stationary_fit(
            g,
            *case.box,
            eta=case.box_eta,
            particles=sizes["box_particles"],
            steps=sizes["box_steps"],
            seed=derive_seed(seed, stream("walk.stationary")),
        )
    else:
        out["stationary"] = None
        out["stationary_note"] = (
            "not measured: with one shared zeta the walk moves along g only, and Eq. 10 "
            "fixes rho only along g (rho ∝ |g|^-1 on each integral curve), so there is no single k"
        )
    return out


def run_suite(
    *, quick: bool = False, seed: int = 0, cases: tuple[Case, ...] = CASES, sizes: dict | None = None
) -> dict:
    """All cases of :data:`CASES`; a JSON-ready dict. Sizes default to the ``walk`` preset's (quick or not)."""
    if sizes is None:
        sizes = presets.get("walk").settings(quick=quick)
    return {"quick": quick, "seed": seed, "cases": [run_case(c, sizes=sizes, seed=seed) for c in cases]}
