"""``thermosgd walk``: run the walk of Eq. 8 for a formula g and put it next to Eq. 10.

Arguments are checked here and bad ones raise :class:`~thermosgd.errors.UsageError`
(one line, exit code 2, via the main CLI).
"""

from __future__ import annotations

import argparse
import json
import math
import os

from thermosgd.cli.common import out_folder
from thermosgd.errors import UsageError

__all__ = ["register", "run"]

#: Step sizes the walk and its measurement grid can represent in double precision.
ETA_RANGE = (1e-150, 1e150)


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
    p.add_argument(
        "--g", required=True, metavar="EXPR", help="g as a formula in q, e.g. '1+0.5*sin(q)'; q[0], q[1] for --dim > 1"
    )
    p.add_argument(
        "--domain", default="free", metavar="DOMAIN", help="free | periodic:LO,HI | reflect:LO,HI (default free)"
    )
    p.add_argument("--eta", type=float, required=True, help="step size (> 0)")
    p.add_argument("--particles", type=int, default=10_000, help="number of particles (default 10000)")
    p.add_argument("--steps", type=int, default=1_000, help="number of steps (default 1000)")
    p.add_argument("--dim", type=int, default=1, help="number of coordinates D (default 1)")
    p.add_argument(
        "--noise", choices=("binary", "gaussian"), default="binary", help="law of zeta (default binary, Eq. 8)"
    )
    p.add_argument("--independent", action="store_true", help="one zeta per coordinate instead of one shared (Eq. 7)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    p.add_argument(
        "--threads", type=int, help="torch CPU threads (default: torch's choice; 1 is faster on a busy machine)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--out", type=out_folder, metavar="DIR", help="also write walk.json and a density figure into DIR")
    p.set_defaults(func=run)


def _check_args(args) -> None:
    if not (math.isfinite(args.eta) and args.eta > 0):
        raise UsageError(f"--eta must be positive, got {args.eta}")
    if not ETA_RANGE[0] <= args.eta <= ETA_RANGE[1]:  # beyond, eta·g under- or overflows double precision
        raise UsageError(f"--eta must be between {ETA_RANGE[0]:g} and {ETA_RANGE[1]:g}, got {args.eta:g}")
    for name in ("particles", "steps", "dim"):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name} must be positive, got {getattr(args, name)}")
    cores = os.cpu_count() or 1
    if args.threads is not None and not 0 < args.threads <= cores:
        raise UsageError(f"--threads must be between 1 and the {cores} CPU cores of this machine, got {args.threads}")
    if args.dim > 10:
        raise UsageError(f"--dim must be at most 10, got {args.dim}")


def run(args: argparse.Namespace) -> int:
    """Run one walk; print a summary (or JSON); return 0."""
    _check_args(args)
    if args.out is not None:  # refused before the walk runs; a refusal touches nothing
        from thermosgd.sweep.store import check_output_folder

        args.out = check_output_folder(args.out, "command", "walk")
    import torch

    from thermosgd.jsonsafe import json_safe
    from thermosgd.reproduce.walk_lab import run_walk

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        out = _walk(args, run_walk)
    except UsageError:
        raise
    except (OverflowError, ValueError) as exc:  # the measurement grid scales with eta·g (walk.compare)
        raise UsageError(
            f"the walk's steps eta·g are too small or too large for double precision ({exc}); "
            "choose eta and g so that eta·g lies between 1e-150 and 1e150"
        ) from None
    if args.out is not None:
        _write(args.out, out)
    if args.json:
        print(json.dumps(json_safe(out)))
    else:
        _print_summary(out)
    return 0


def _walk(args, run_walk) -> dict:
    return run_walk(
        args.g,
        eta=args.eta,
        particles=args.particles,
        steps=args.steps,
        dim=args.dim,
        domain=args.domain,
        noise=args.noise,
        shared=not args.independent,
        seed=args.seed,
    )


def _write(out_dir, out: dict) -> None:
    """walk.json and the density figure, into a folder that is new, empty or an earlier ``walk --out``."""
    from thermosgd.figures.walk import plot_density_over_time
    from thermosgd.jsonsafe import json_safe
    from thermosgd.sweep.store import claim_command_folder, write_text

    out_dir = claim_command_folder(out_dir, "walk")
    write_text(out_dir / "walk.json", json.dumps(json_safe(out), indent=1))
    d = out["density"]
    plot_density_over_time(
        d["centers"], d["steps"], d["rho"], out_dir / "density", title=f"g = {out['g']}, {out['domain']}"
    )


def _print_summary(out: dict) -> None:
    f = out["thermophoretic_flux"]
    print(
        f"walk g = {out['g']}  domain {out['domain']}  eta {out['eta']} "
        f" {out['particles']} particles x {out['steps']} steps"
    )
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
            f"stationary density rho ~ g^-k: k = {out['stationary_exponent']:.3f} "
            f"± {out['stationary_exponent_stderr']:.3f}, "
            f"Eq. 10 implies k = {out['stationary_exponent_eq10']:.3g}, "
            f"Fokker-Planck k = {out['stationary_exponent_fokker_planck']:.3g}"
        )
        if "WARNING" in out["stationary_note"]:
            print(out["stationary_note"].split("; ", 1)[1])
    else:
        print(f"stationary exponent: {out['stationary_note']}")
