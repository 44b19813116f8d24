"""One walk for a user's g, measured next to Eq. 10: what ``thermosgd walk`` runs.

Simulates with :mod:`thermosgd.walk` and fits with :mod:`thermosgd.analysis.walk_fits`.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch

from thermosgd.analysis.walk_fits import fit_stationary_exponent
from thermosgd.errors import UsageError
from thermosgd.reproduce.walk_suite import local_thermophoretic_flux
from thermosgd.seeds import derive_seed, generator, stream
from thermosgd.walk import theory
from thermosgd.walk.expr import parse_g
from thermosgd.walk.simulate import Free, Periodic, Reflect, simulate

__all__ = ["parse_domain", "check_g_in_box", "run_walk"]

_GRID_POINTS = 200_000  # points at which g > 0 is checked in a box


def parse_domain(text: str):
    """``free``, ``periodic:LO,HI`` or ``reflect:LO,HI`` -> a domain object."""
    text = text.strip()
    if text == "free":
        return Free()
    kind, sep, rest = text.partition(":")
    if kind not in ("periodic", "reflect") or not sep:
        raise UsageError(f"domain must be free, periodic:LO,HI or reflect:LO,HI, got {text!r}", param="domain")
    try:
        lo, hi = (float(x) for x in rest.split(","))
    except ValueError:
        raise UsageError(f"domain {kind}:LO,HI needs two numbers, got {rest!r}", param="domain") from None
    return Periodic(lo, hi) if kind == "periodic" else Reflect(lo, hi)


def check_g_in_box(g, domain, dim: int) -> None:
    """g > 0 and finite on a grid of the box (free domains are checked along the way)."""
    if isinstance(domain, Free):
        return
    per_axis = max(3, int(_GRID_POINTS ** (1 / dim)))
    axis = torch.linspace(domain.lo, domain.hi, per_axis, dtype=torch.float64)
    pts = torch.cartesian_prod(*[axis] * dim).reshape(-1, dim)
    with torch.no_grad():
        gq = torch.broadcast_to(torch.as_tensor(g(pts), dtype=pts.dtype).reshape(pts.shape[0], -1), pts.shape)
    bad = ~((gq > 0) & torch.isfinite(gq))
    if bool(bad.any()):
        n = int(torch.nonzero(bad)[0, 0])
        raise UsageError(f"g must be positive in the domain, but g({pts[n].tolist()}) = {gq[n].tolist()}")


def run_walk(
    g_expr: str,
    *,
    eta: float,
    particles: int,
    steps: int,
    dim: int = 1,
    domain: str = "free",
    noise: str = "binary",
    shared: bool = True,
    seed: int = 0,
) -> dict:
    """One walk of Eq. 8 for a formula g, measured next to Eq. 10; a JSON-ready dict.

    Args:
        g_expr: g as a formula in ``q`` (see :func:`~thermosgd.walk.expr.parse_g`).
        eta: step size.
        particles: number of particles.
        steps: number of steps.
        dim: number of coordinates D.
        domain: ``free``, ``periodic:LO,HI`` or ``reflect:LO,HI``.
        noise: law of zeta, ``"binary"`` (Eq. 8) or ``"gaussian"``.
        shared: one zeta shared by all coordinates (Eq. 7) or one per coordinate.
        seed: seed of every random draw.

    Returns:
        Displacement moments, the thermophoretic flux at a point (measured, Eq. 10,
        Fokker-Planck), the stationary exponent in a reflecting box, the density over time.
    """
    _check(particles, seed)
    args = SimpleNamespace(
        g=g_expr,
        eta=eta,
        particles=particles,
        steps=steps,
        dim=dim,
        domain=domain,
        noise=noise,
        independent=not shared,
        seed=seed,
    )
    box = parse_domain(args.domain)
    g = parse_g(args.g, args.dim)
    check_g_in_box(g, box, args.dim)
    q0, point, max_half = _start(args, box)
    shown = sorted({0, *[int(round(args.steps ** (i / 5))) for i in range(1, 6)]})
    burn = args.steps // 2
    every = max(1, (args.steps - burn) // 100)
    record = lambda t: t in shown or (t >= burn and (t - burn) % every == 0)  # noqa: E731
    res = simulate(
        g,
        q0,
        args.eta,
        args.steps,
        domain=box,
        noise=args.noise,
        shared=not args.independent,
        seed=derive_seed(args.seed, stream("walk.steps")),
        record=record,
    )
    out = {
        "g": args.g,
        "dim": args.dim,
        "domain": args.domain,
        "eta": args.eta,
        "particles": args.particles,
        "steps": args.steps,
        "noise": args.noise,
        "shared": not args.independent,
        "seed": args.seed,
        "mean_displacement": res.mean_displacement[-1].tolist(),
        "mean_squared_displacement": res.msd[-1].tolist(),
    }
    out["thermophoretic_flux"] = _flux(args, point, max_half)
    out.update(_stationary(args, g, box, res, burn))
    out["density"] = _density(box, res, shown)
    return out


def _check(particles, seed) -> None:
    if isinstance(particles, bool) or not isinstance(particles, int) or particles < 2:
        raise UsageError(
            f"particles must be at least 2 (a standard error needs two), got {particles}", param="particles"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise UsageError(f"seed must be an integer in [0, 2^32), got {seed}", param="seed")


def _start(args, box) -> tuple[torch.Tensor, list[float], float]:
    """Initial positions ``(particles, D)``, the point where the flux is measured, and the room around it."""
    dtype = torch.float64
    if isinstance(box, Free):
        return torch.zeros(args.particles, args.dim, dtype=dtype), [0.0] * args.dim, 1.0
    gen = generator(args.seed, stream("walk.start"))
    q0 = box.lo + box.length * torch.rand(args.particles, args.dim, generator=gen, dtype=dtype)
    max_half = min(1.0, 0.5 * box.length) if isinstance(box, Reflect) else 1.0
    return q0, [0.5 * (box.lo + box.hi)] * args.dim, max_half


def _density(box, res, shown: list[int]) -> dict:
    """The density of coordinate 0 at the ``shown`` steps."""
    lo, hi = _range(box, res)
    keep = [i for i, t in enumerate(res.record_steps.tolist()) if t in shown]
    centers, rho_t = res.density_over_time(50, lo, hi)
    return {
        "axis": 0,
        "centers": centers.tolist(),
        "steps": [shown[i] for i in range(len(keep))],
        "rho": rho_t[keep].tolist(),
    }


def _flux(args, point, max_half) -> dict:
    """(a) at ``point`` with the user's particles and eta (shared zeta, as in Eq. 10)."""
    try:
        res = local_thermophoretic_flux(
            args.g,
            args.dim,
            point,
            args.eta,
            particles=args.particles,
            max_half=max_half,
            seed=derive_seed(args.seed, stream("walk.local_flux")),
            noise=args.noise,
        )
    except UsageError as exc:  # the walk itself is fine; only this measurement does not fit
        return {"point": point, "note": f"not measured: {exc}"}
    if not res["mean_stderr"] > 0:  # every particle crossed alike (or none did): no spread, no error bar
        return {
            "point": point,
            "note": f"not measured: {args.particles} particles gave too few plane crossings "
            "for a standard error; use more particles",
        }
    return {
        "point": res["point"],
        "eta": res["eta"],
        "measured": res["mean_measured"],
        "measured_stderr": res["mean_stderr"],
        "eq10": res["mean_eq10"],
        "fokker_planck": res["mean_fokker_planck"],
        "ratio_eq10": res["ratio_eq10"],
        "ratio_fokker_planck": res["ratio_fokker_planck"],
        "planes": res["offsets"],
    }


def _stationary(args, g, domain, res, burn) -> dict:
    empty = {
        "stationary_exponent": None,
        "stationary_exponent_stderr": None,
        "stationary_exponent_eq10": None,
        "stationary_exponent_fokker_planck": None,
    }
    if not isinstance(domain, Reflect):
        return {**empty, "stationary_note": "only fitted in a reflecting box"}
    if args.dim != 1:
        return {**empty, "stationary_note": "only fitted for dim = 1"}
    try:
        fit = fit_stationary_exponent(res, g, domain.lo, domain.hi, since=burn)
    except UsageError as exc:
        grid = torch.linspace(domain.lo, domain.hi, 501, dtype=torch.float64)
        try:
            k_eq10 = theory.stationary_exponent(g, grid, theory="eq10")
        except UsageError:
            k_eq10 = None
        return {**empty, "stationary_exponent_eq10": k_eq10, "stationary_note": f"not fitted: {exc}"}
    # Slowest relaxation mode of diffusion in a box of length L: L² / (π² D), with
    # D = ½ η² ⟨g²⟩ (the walk's own variance per step); a fit made sooner than a
    # few relaxation times after the start measures the transient, not the
    # stationary density.
    grid = torch.linspace(domain.lo, domain.hi, 201, dtype=torch.float64).unsqueeze(-1)
    g2 = float((g(grid) ** 2).mean())
    relax = domain.length**2 / (math.pi**2 * 0.5 * args.eta**2 * g2)
    out = {
        "stationary_exponent": fit["k_fit"],
        "stationary_exponent_stderr": fit["k_stderr"],
        "stationary_exponent_eq10": fit["k_eq10"],
        "stationary_exponent_fokker_planck": fit["k_fokker_planck"],
        "stationary_note": f"fitted on [{fit['fit_range'][0]:.4g}, {fit['fit_range'][1]:.4g}] from step {burn}",
        "relaxation_steps": relax,
    }
    if burn < 3 * relax:
        out["stationary_note"] += (
            f"; WARNING: not yet stationary (the fit starts at step {burn}, under 3 relaxation times "
            f"= {3 * relax:.0f} steps): use more steps"
        )
    return out


def _range(domain, res):
    if not isinstance(domain, Free):
        return domain.lo, domain.hi
    x = res.snapshots[..., 0]
    lo, hi = float(x.min()), float(x.max())
    return (lo - 0.5, hi + 0.5) if hi - lo < 1e-9 else (lo, hi)
