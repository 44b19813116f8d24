"""Measured against predicted: the walk of Eq. 8 next to Eq. 10 (and its Fokker-Planck twin).

Every number here is either a count from :func:`~thermosgd.walk.simulate.simulate`
or a value of a formula in :mod:`thermosgd.walk.theory`; neither is adjusted
toward the other. For each case we report

(a) the thermophoretic flux: net crossings per step of planes through a region
    of exactly uniform density (one step from i.i.d. uniform positions),
(b) the diffusive flux: the same under a linear density profile, minus the
    uniform-density flux scaled by the local density,
(c) the stationary density in a reflecting box, fitted as rho ∝ g^-k,
(d) the thermophoretic flux at several eta, fitted as J ∝ eta^p.

Planes are normal to g at the measuring point (so the flux is along U, as in
Eq. 10) and at least one jump length apart, so one particle crosses at most one
plane per step. Standard errors come from the i.i.d. particles (a, b, d) or from
independent batches of particles (c).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from thermosgd import presets
from thermosgd.errors import UsageError
from thermosgd.fitting import weighted_slope
from thermosgd.walk import theory
from thermosgd.walk.expr import parse_g
from thermosgd.walk.simulate import Planes, Reflect, simulate

__all__ = [
    "Case",
    "CASES",
    "measure_plane_flux",
    "thermophoretic_flux",
    "diffusive_flux",
    "fit_stationary_exponent",
    "stationary_fit",
    "local_thermophoretic_flux",
    "run_case",
    "run_suite",
]

DTYPE = torch.float64


@dataclass(frozen=True)
class Case:
    """One comparison: a g, where to measure, and at which step sizes.

    Attributes:
        name: Short label.
        g: Formula in q (see :func:`~thermosgd.walk.expr.parse_g`).
        dim: Number of coordinates D (all share one zeta).
        point: Where the fluxes are measured, length D.
        half: Half-width of the uniform region around ``point``.
        eta: Step size for (a) and (b).
        etas: Step sizes for (d); planes are spaced for the largest.
        box: Reflecting box (lo, hi) for (c) in one dimension, or None.
        box_eta: Step size for (c).
        patch: Patch radius for D > 1.
        offsets: Plane offsets along the normal for D > 1 (for D = 1 they fill the region).
    """

    name: str
    g: str
    dim: int
    point: tuple[float, ...]
    half: float
    eta: float
    etas: tuple[float, ...]
    box: tuple[float, float] | None = None
    box_eta: float = 0.2
    patch: float = 0.25
    offsets: tuple[float, ...] = field(default=(0.0,))


CASES: tuple[Case, ...] = (
    Case("1d-linear", "1 + 0.5*q", 1, (0.0,), 1.0, 0.2, (0.05, 0.1, 0.2, 0.4), box=(0.0, 6.0)),
    Case("1d-nonlinear", "1 + 0.5*sin(q)", 1, (0.0,), 1.0, 0.2, (0.05, 0.1, 0.2, 0.4), box=(-math.pi / 2, math.pi / 2)),
    Case(
        "2d-shared",
        "(exp(0.5*q[0]), exp(0.5*q[1]))",
        2,
        (0.0, 0.0),
        0.75,
        0.2,
        (0.05, 0.1, 0.2),
        patch=0.25,
        offsets=(0.0,),
    ),
)


# --------------------------------------------------------------------------- sampling


def _sample_region(n, point, half, normal, slope, gen) -> torch.Tensor:
    """i.i.d. points with density ∝ 1 + slope * normal.(q - point) on the cube ``point ± half``: ``(n, D)``."""
    dim = point.numel()
    if slope == 0:
        return point + half * (2 * torch.rand(n, dim, generator=gen, dtype=DTYPE) - 1)
    top = 1 + abs(slope) * half * float(normal.abs().sum())
    out = []
    have = 0
    while have < n:
        x = point + half * (2 * torch.rand(2 * n, dim, generator=gen, dtype=DTYPE) - 1)
        keep = torch.rand(2 * n, generator=gen, dtype=DTYPE) * top < 1 + slope * ((x - point) @ normal)
        out.append(x[keep])
        have += int(keep.sum())
    return torch.cat(out)[:n]


# --------------------------------------------------------------------------- (a), (b), (d)


def _normal_at(g, point) -> torch.Tensor:
    gp, _ = theory.jacobian(g, point[None, :])
    return gp[0] / torch.linalg.vector_norm(gp[0])


def _plane_points(point, normal, offsets, patch):
    """Points where theory is evaluated per plane, and their quadrature weights: ``(K, P, D)``, ``(P,)``."""
    centers = point + offsets[:, None] * normal  # (K, D)
    dim = point.numel()
    if dim == 2:
        # Gauss-Legendre along the patch: the measured flux is a patch average.
        x, w = np.polynomial.legendre.leggauss(5)
        tangent = torch.stack([-normal[1], normal[0]])
        along = torch.as_tensor(x, dtype=DTYPE) * patch
        pts = centers[:, None, :] + along[None, :, None] * tangent
        return pts, torch.as_tensor(w / 2, dtype=DTYPE)
    return centers[:, None, :], torch.ones(1, dtype=DTYPE)


def _predict(g, pts, weights, normal, rho, grad_rho, eta):
    """Eq. 10 and Fokker-Planck fluxes through each plane along ``normal``, patch-averaged: dicts of ``(K,)``."""
    k, p, dim = pts.shape
    flat = pts.reshape(-1, dim)
    rho_v = rho(flat)
    grad_v = grad_rho(flat)
    gq, _ = theory.jacobian(g, flat)
    ghat = gq / torch.linalg.vector_norm(gq, dim=1, keepdim=True)
    along = ghat @ normal  # Eq. 10's J points along g
    eq = theory.flux(g, flat, rho_v, grad_v, eta)
    fp = theory.flux_fokker_planck(g, flat, rho_v, grad_v, eta)

    def avg(v):
        return (v.reshape(k, p) * weights).sum(1)

    return {
        "eq10_diffusion": avg(eq.diffusion * along),
        "eq10_thermophoretic": avg(eq.thermophoretic * along),
        "fp_diffusion": avg(fp.diffusion @ normal),
        "fp_thermophoretic": avg(fp.thermophoretic @ normal),
    }


def measure_plane_flux(
    g,
    point,
    normal,
    offsets,
    *,
    eta: float,
    particles: int,
    half: float,
    slope: float = 0.0,
    patch: float | None = None,
    seed: int = 0,
    noise: str = "binary",
    chunk: int = 1_000_000,
) -> dict:
    """One step of the walk from i.i.d. positions; net crossings of each plane.

    Positions are drawn with density ∝ ``1 + slope * normal.(q - point)`` on the cube
    ``point ± half`` (uniform for ``slope = 0``) and moved once with Eq. 8.

    Args:
        g: Noise amplitude, row-wise ``(N, D) -> (N, D)``.
        point: ``(D,)``; normal: unit ``(D,)``; offsets: ``(K,)`` plane offsets along it.
        eta: Step size. particles: Total number of particles (drawn in chunks).
        half: Half-width of the region. slope: Relative density gradient along the normal.
        patch: Patch radius (D > 1); None for full planes (D = 1).
        seed: Seed; chunk c uses ``seed * 1_000_003 + c``.
        noise: ``"binary"`` or ``"gaussian"``.

    Returns:
        Dict of tensors: ``flux`` and ``stderr`` ``(K,)`` (probability per step and
        unit area), ``mean`` and ``mean_stderr`` (the plain average over planes).
    """
    dim = point.numel()
    counts = torch.zeros(len(offsets), 2, dtype=torch.long)
    planes = Planes(
        offsets=[float(point @ normal + o) for o in offsets],
        normal=0 if dim == 1 else normal.tolist(),
        center=None if patch is None else point.tolist(),
        halfwidth=patch,
    )
    done = 0
    c = 0
    while done < particles:
        n = min(chunk, particles - done)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + c)
        q0 = _sample_region(n, point, half, normal, slope, gen)
        res = simulate(g, q0, eta, 1, planes=planes, seed=seed * 1_000_003 + c + 500_000, noise=noise)
        counts += res.crossings[0]
        done += n
        c += 1
    area = planes.area(dim)
    n = float(particles)
    fwd, bwd = counts[:, 0].to(DTYPE), counts[:, 1].to(DTYPE)
    mean_c = (fwd - bwd) / n
    hits = (fwd + bwd) / n
    k = len(offsets)
    # A particle crosses at most one plane, so per particle sum_k c_k^2 = #crossed.
    pooled_var = (hits.sum() - mean_c.sum() ** 2) / k**2 / n
    return {
        "flux": mean_c / area,
        "stderr": torch.sqrt((hits - mean_c**2) / n) / area,
        "mean": mean_c.mean() / area,
        "mean_stderr": torch.sqrt(pooled_var) / area,
    }


def _geometry(case: Case, g, etas):
    """Point, normal, plane offsets and a check that jumps stay inside the uniform region."""
    point = torch.tensor(case.point, dtype=DTYPE)
    normal = _normal_at(g, point)
    grid = point + case.half * (
        2 * torch.rand(4096, case.dim, generator=torch.Generator().manual_seed(0), dtype=DTYPE) - 1
    )
    gmax = float(torch.linalg.vector_norm(theory.jacobian(g, grid)[0], dim=1).max())
    jump = max(etas) * gmax * 1.05
    if case.dim == 1:
        room = case.half - jump
        count = max(1, int(2 * room / jump) + 1)
        offsets = torch.linspace(-room, room, count, dtype=DTYPE) if count > 1 else torch.zeros(1, dtype=DTYPE)
        if room <= 0:
            raise UsageError(f"{case.name}: region half-width {case.half} is smaller than a jump {jump:.3g}")
    else:
        offsets = torch.tensor(case.offsets, dtype=DTYPE)
        reach = math.sqrt(float(offsets.abs().max()) ** 2 + case.patch**2) + jump
        if reach > case.half:
            raise UsageError(f"{case.name}: patches plus a jump ({reach:.3g}) leave the region ({case.half})")
    return point, normal, offsets, jump


def _ratio(m, m_se, p):
    return (m / p, abs(m_se / p)) if p != 0 else (float("nan"), float("nan"))


def _flux_row(offsets, measured, stderr, mean, mean_se, eq, fp) -> dict:
    """Measured plane fluxes beside Eq. 10 and the Fokker-Planck prediction, with ratios."""
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


def thermophoretic_flux(case: Case, *, particles: int, seed: int = 0, noise: str = "binary") -> dict:
    """(a) and (d): thermophoretic flux at uniform density for ``case.etas`` (and ``case.eta``).

    Returns:
        Dict with per-eta plane fluxes, Eq. 10 and Fokker-Planck predictions, the
        ratios measured / predicted of the plane-averaged flux, and the fitted
        exponent p of ``|J| ∝ eta^p`` (weighted least squares on log-log axes).
    """
    g = parse_g(case.g, case.dim)
    etas = sorted(set(case.etas) | {case.eta})
    point, normal, offsets, _ = _geometry(case, g, etas)
    rho0 = 1.0 / (2 * case.half) ** case.dim
    pts, w = _plane_points(point, normal, offsets, case.patch)
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
            seed=seed + 17 * i,
            noise=noise,
        )
        pred = _predict(
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
                **_flux_row(offsets, m["flux"], m["stderr"], float(m["mean"]), float(m["mean_stderr"]), eq, fp),
            }
        )
    x = np.log([b["eta"] for b in by_eta])
    m = np.abs([b["mean_measured"] for b in by_eta])
    if np.all(m > 0):  # a zero count (tiny runs) leaves the exponent undefined
        sy = np.array([b["mean_stderr"] for b in by_eta]) / m
        slope, slope_se = weighted_slope(x, np.log(m), sy)
    else:
        slope, slope_se = float("nan"), float("nan")
    main = next(b for b in by_eta if b["eta"] == case.eta)
    return {"main": main, "by_eta": by_eta, "exponent": slope, "exponent_stderr": slope_se, "exponent_eq10": 2.0}


def diffusive_flux(case: Case, *, particles: int, seed: int = 0, noise: str = "binary") -> dict:
    """(b): diffusive flux under the density ``rho0 (1 + beta n.(q - point))``.

    Measured diffusive flux per plane = J(gradient) - (rho_plane / rho0) J(uniform),
    both counted; predicted = the diffusion term of Eq. 10 (and of Fokker-Planck).
    """
    g = parse_g(case.g, case.dim)
    point, normal, offsets, _ = _geometry(case, g, [case.eta])
    dim = case.dim
    rho0 = 1.0 / (2 * case.half) ** dim
    beta = 0.5 / (case.half * float(normal.abs().sum()))
    patch = None if dim == 1 else case.patch
    common = dict(eta=case.eta, particles=particles, half=case.half, patch=patch, noise=noise)
    flat = measure_plane_flux(g, point, normal, offsets, seed=seed + 1001, **common)
    grad = measure_plane_flux(g, point, normal, offsets, slope=beta, seed=seed + 2002, **common)
    scale = 1 + beta * offsets
    measured = grad["flux"] - scale * flat["flux"]
    stderr = torch.sqrt(grad["stderr"] ** 2 + (scale * flat["stderr"]) ** 2)
    mean_m = float(measured.mean())
    mean_se = float(torch.sqrt(grad["mean_stderr"] ** 2 + (flat["mean_stderr"] * scale.mean()) ** 2))
    pts, w = _plane_points(point, normal, offsets, case.patch)
    pred = _predict(
        g,
        pts,
        w,
        normal,
        lambda x: rho0 * (1 + beta * ((x - point) @ normal)),
        lambda x: (rho0 * beta * normal).expand_as(x),
        case.eta,
    )
    eq, fp = pred["eq10_diffusion"], pred["fp_diffusion"]
    return {"eta": case.eta, "relative_gradient": beta, **_flux_row(offsets, measured, stderr, mean_m, mean_se, eq, fp)}


# --------------------------------------------------------------------------- (c)


def fit_stationary_exponent(result, g, lo: float, hi: float, *, since: int, bins: int = 40, batches: int = 8) -> dict:
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
    snaps = result.snapshots[keep][..., 0].to(DTYPE)  # (R, N)
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
    q0 = lo + (hi - lo) * torch.rand(particles, 1, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)
    burn = steps // 2
    record = lambda t: t in early or (t >= burn and (t - burn) % every == 0)  # noqa: E731
    res = simulate(g, q0, eta, steps, domain=Reflect(lo, hi), seed=seed + 1, noise=noise, record=record)
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
    gmax = float(torch.linalg.vector_norm(theory.jacobian(g, p[None, :] + half * _corners(dim))[0], dim=1).max())
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


def _corners(dim: int) -> torch.Tensor:
    """Corners and center of the unit cube [-1, 1]^D (for D <= 10), plus random points: ``(P, D)``."""
    pts = [torch.zeros(1, dim, dtype=DTYPE)]
    if dim <= 10:
        grid = torch.cartesian_prod(*[torch.tensor([-1.0, 0.0, 1.0], dtype=DTYPE)] * dim)
        pts.append(grid.reshape(-1, dim))
    pts.append(2 * torch.rand(2048, dim, generator=torch.Generator().manual_seed(0), dtype=DTYPE) - 1)
    return torch.cat(pts)


# --------------------------------------------------------------------------- suite


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
            seed=seed + 7,
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
