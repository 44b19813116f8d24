"""``thermosgd walk``: run the walk of Eq. 8 for a formula g and put it next to Eq. 10.

Arguments are checked here and bad ones raise :class:`~thermosgd.errors.UsageError`
(one line, exit code 2, via the main CLI).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from thermosgd.errors import UsageError
from thermosgd.walk import compare, theory
from thermosgd.walk.expr import parse_g
from thermosgd.walk.simulate import Free, Periodic, Reflect, simulate

__all__ = ["register", "run", "parse_domain"]

_GRID_POINTS = 200_000  # points at which g > 0 is checked in a box


def register(subparsers) -> None:
    """Add the ``walk`` subcommand."""
    p = subparsers.add_parser(
        "walk",
        help="simulate the random walk of Sec. 3 (Eq. 8) and compare with Eq. 10",
        description=(
            "Simulate q <- q - eta g(q) zeta for many particles and compare with the paper's Eq. 10. "
            "Free walks start at the origin, box walks uniform in the box."
        ),
    )
    p.add_argument("--g", required=True, metavar="EXPR", help="g as a formula in q, e.g. '1+0.5*sin(q)'; q[0], q[1] for --dim > 1")
    p.add_argument("--domain", default="free", metavar="DOMAIN", help="free | periodic:LO,HI | reflect:LO,HI (default free)")
    p.add_argument("--eta", type=float, required=True, help="step size (> 0)")
    p.add_argument("--particles", type=int, default=10_000, help="number of particles (default 10000)")
    p.add_argument("--steps", type=int, default=1_000, help="number of steps (default 1000)")
    p.add_argument("--dim", type=int, default=1, help="number of coordinates D (default 1)")
    p.add_argument("--noise", choices=("binary", "gaussian"), default="binary", help="law of zeta (default binary, Eq. 8)")
    p.add_argument("--independent", action="store_true", help="one zeta per coordinate instead of one shared (Eq. 7)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice; 1 is faster on a busy machine)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--out", type=Path, metavar="DIR", help="also write walk.json and a density figure into DIR")
    p.set_defaults(func=run)


def parse_domain(text: str):
    """``free``, ``periodic:LO,HI`` or ``reflect:LO,HI`` -> a domain object."""
    text = text.strip()
    if text == "free":
        return Free()
    kind, sep, rest = text.partition(":")
    if kind not in ("periodic", "reflect") or not sep:
        raise UsageError(f"--domain must be free, periodic:LO,HI or reflect:LO,HI, got {text!r}")
    try:
        lo, hi = (float(x) for x in rest.split(","))
    except ValueError:
        raise UsageError(f"--domain {kind}:LO,HI needs two numbers, got {rest!r}") from None
    return Periodic(lo, hi) if kind == "periodic" else Reflect(lo, hi)


def _check_args(args) -> None:
    if not (math.isfinite(args.eta) and args.eta > 0):
        raise UsageError(f"--eta must be positive, got {args.eta}")
    for name in ("particles", "steps", "dim"):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name} must be positive, got {getattr(args, name)}")
    if args.threads is not None and args.threads <= 0:
        raise UsageError(f"--threads must be positive, got {args.threads}")
    if args.dim > 10:
        raise UsageError(f"--dim must be at most 10, got {args.dim}")


def _check_g_in_box(g, domain, dim: int) -> None:
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


def run(args: argparse.Namespace) -> int:
    """Run one walk; print a summary (or JSON); return 0."""
    _check_args(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    domain = parse_domain(args.domain)
    g = parse_g(args.g, args.dim)
    _check_g_in_box(g, domain, args.dim)
    gen = torch.Generator().manual_seed(args.seed)
    dtype = torch.float64
    if isinstance(domain, Free):
        q0 = torch.zeros(args.particles, args.dim, dtype=dtype)
        point = [0.0] * args.dim
        max_half = 1.0
    else:
        q0 = domain.lo + domain.length * torch.rand(args.particles, args.dim, generator=gen, dtype=dtype)
        point = [0.5 * (domain.lo + domain.hi)] * args.dim
        max_half = min(1.0, 0.5 * domain.length) if isinstance(domain, Reflect) else 1.0
    shown = sorted({0, *[int(round(args.steps ** (i / 5))) for i in range(1, 6)]})
    burn = args.steps // 2
    every = max(1, (args.steps - burn) // 100)
    record = lambda t: t in shown or (t >= burn and (t - burn) % every == 0)  # noqa: E731
    res = simulate(
        g, q0, args.eta, args.steps, domain=domain, noise=args.noise,
        shared=not args.independent, seed=args.seed + 1, record=record,
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
    out.update(_stationary(args, g, domain, res, burn))
    lo, hi = _range(domain, res)
    keep = [i for i, t in enumerate(res.record_steps.tolist()) if t in shown]
    centers, rho_t = res.density_over_time(50, lo, hi)
    out["density"] = {"axis": 0, "centers": centers.tolist(), "steps": [shown[i] for i in range(len(keep))], "rho": rho_t[keep].tolist()}
    if args.out is not None:
        _write(args.out, out)
    if args.json:
        print(json.dumps(compare.jsonable(out)))
    else:
        _print_summary(out)
    return 0


def _flux(args, point, max_half) -> dict:
    """(a) at ``point`` with the user's particles and eta (shared zeta, as in Eq. 10)."""
    try:
        res = compare.local_thermophoretic_flux(
            args.g, args.dim, point, args.eta, particles=args.particles, max_half=max_half,
            seed=args.seed + 2, noise=args.noise,
        )
    except UsageError as exc:  # the walk itself is fine; only this measurement does not fit
        return {"point": point, "note": f"not measured: {exc}"}
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
    empty = {"stationary_exponent": None, "stationary_exponent_stderr": None, "stationary_exponent_eq10": None,
             "stationary_exponent_fokker_planck": None}
    if not isinstance(domain, Reflect):
        return {**empty, "stationary_note": "only fitted in a reflecting box"}
    if args.dim != 1:
        return {**empty, "stationary_note": "only fitted for --dim 1"}
    try:
        fit = compare.fit_stationary_exponent(res, g, domain.lo, domain.hi, since=burn)
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
            f"= {3 * relax:.0f} steps): increase --steps"
        )
    return out


def _range(domain, res):
    if not isinstance(domain, Free):
        return domain.lo, domain.hi
    x = res.snapshots[..., 0]
    lo, hi = float(x.min()), float(x.max())
    return (lo - 0.5, hi + 0.5) if hi - lo < 1e-9 else (lo, hi)


def _write(out_dir: Path, out: dict) -> None:
    from thermosgd.figures.walk import plot_density_over_time

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create --out {out_dir}: {exc.strerror}") from None
    (out_dir / "walk.json").write_text(json.dumps(compare.jsonable(out), indent=1))
    d = out["density"]
    plot_density_over_time(d["centers"], d["steps"], d["rho"], out_dir / "density", title=f"g = {out['g']}, {out['domain']}")


def _print_summary(out: dict) -> None:
    f = out["thermophoretic_flux"]
    print(f"walk g = {out['g']}  domain {out['domain']}  eta {out['eta']}  {out['particles']} particles x {out['steps']} steps")
    print(f"mean displacement {out['mean_displacement']}  mean squared displacement {out['mean_squared_displacement']}")
    if "measured" in f:
        print(
            f"thermophoretic flux at {f['point']}: measured {f['measured']:.4g} ± {f['measured_stderr']:.2g}, "
            f"Eq. 10 {f['eq10']:.4g} (ratio {f['ratio_eq10']:.3g}), Fokker-Planck {f['fokker_planck']:.4g}"
        )
    else:
        print(f"thermophoretic flux: {f['note']}")
    if out["stationary_exponent"] is not None:
        print(
            f"stationary density rho ~ g^-k: k = {out['stationary_exponent']:.3f} ± {out['stationary_exponent_stderr']:.3f}, "
            f"Eq. 10 implies k = {out['stationary_exponent_eq10']:.3g}, Fokker-Planck k = {out['stationary_exponent_fokker_planck']:.3g}"
        )
        if "WARNING" in out["stationary_note"]:
            print(out["stationary_note"].split("; ", 1)[1])
    else:
        print(f"stationary exponent: {out['stationary_note']}")
