"""Coverage of the collapse fit's nominal 95 % interval on synthetic sweeps with a known answer.

Workload: synthetic sweeps shaped like the two-layer presets (8 seeds, 3000 steps recorded
every 10; η ∈ {0.025, 0.05, 0.075, 0.1} or |B| ∈ {1, 2, 3}). Replica s at swept value x::

    m(t) = 0.5 − D·A_s·(1 − exp(−t·f(x)/800))        master curve in t·f(x), f = (η/η_ref)^α, (|B|/2)^−β
           + 0.004·log2(x/x_ref)                      an x-dependent vertical drift (no collapse)
           + 0.05·exp(−t·(x/x_ref)^(±1)/30)          a fast transient with the wrong exponent
           + σ·ε_s(t)                                 AR(1) noise in raw time, correlation time 50 steps

with D = 0.2 (D = 0.03 in the "weak" cases, where the noise dominates the curves' differences,
as for ‖V‖ in fig4) and A_s = 1 + 0.15·N(0, 1) (replica-to-replica spread of the decay). "shared" streams: one
A_s and one noise path per seed, used at every x (what share_data/share_init do);
"independent": a fresh A and path per (x, seed). The fit window starts at τ = 100 reference
iterations (the transient is mostly, not entirely, gone there).

The target is the exponent the fit finds on the *expected* curves (A = 1, ε = 0, same
window), i.e. the noise-free best collapse, which the drift and transient move away from
α or β. Each draw fits with the package defaults (n_boot = 1000, pairing auto) and records
whether the interval covers the target. The same bootstrap exponents also give the plain
percentile interval (2.5 %, 97.5 %) for comparison; ``--baseline`` adds the old method
(plug-in score, percentile interval, n_boot = 200).

Run:  OMP_NUM_THREADS=1 python benchmarks/bench_collapse_coverage.py [--draws 500] [--baseline]
(500 draws with --baseline: about 11 min of one core; standard error of a coverage near 0.95: 0.010)
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import xarray as xr

from thermosgd.analysis.collapse import _fit, fit_collapse

STEPS, EVERY, SEEDS = 3000, 10, 8
LRS = np.array([0.025, 0.05, 0.075, 0.1])
BATCHES = np.array([1, 2, 3])
SIGMA = 0.02
RHO = math.exp(-EVERY / 50)  # AR(1) coefficient per recorded step: correlation time 50 steps
WINDOW = (100.0, None)
# (swept parameter, exponent, decay amplitude); 0.03 = a weak signal, noise-dominated like ‖V‖
CASES = [("lr", 0.5, 0.2), ("lr", 1.0, 0.2), ("lr", 2.0, 0.2), ("batch_size", 1.0, 0.2), ("lr", 1.0, 0.03)]


def ar1(rng: np.random.Generator, n: int) -> np.ndarray:
    """Stationary AR(1) path with unit variance, ``(n,)``."""
    z = rng.standard_normal(n)
    x = np.empty(n)
    x[0] = z[0]
    for i in range(1, n):
        x[i] = RHO * x[i - 1] + math.sqrt(1 - RHO**2) * z[i]
    return x


def family(
    over: str, exponent: float, *, shared: bool, seed: int | None, n_seeds: int = SEEDS, decay: float = 0.2
) -> xr.Dataset:
    """One synthetic sweep; ``seed=None`` gives the expected (noise-free) curves, one seed."""
    t = np.arange(0, STEPS + 1, EVERY, dtype=float)
    xs, ref, sign = (LRS, 0.05, 1.0) if over == "lr" else (BATCHES.astype(float), 2.0, -1.0)
    rng = np.random.default_rng(seed)
    noisy = seed is not None
    n_seeds = n_seeds if noisy else 1
    data = np.empty((xs.size, n_seeds, t.size))
    amp_s = 1 + 0.15 * rng.standard_normal(n_seeds) if noisy else np.ones(n_seeds)
    path_s = [ar1(rng, t.size) if noisy else np.zeros(t.size) for _ in range(n_seeds)]
    for k, x in enumerate(xs):
        f = (x / ref) ** (sign * exponent)
        for s in range(n_seeds):
            if shared or not noisy:
                amp, path = amp_s[s], path_s[s]
            else:
                amp, path = 1 + 0.15 * rng.standard_normal(), ar1(rng, t.size)
            data[k, s] = (
                0.5
                - decay * amp * (1 - np.exp(-t * f / 800))
                + 0.004 * np.log2(x / ref)
                + 0.05 * np.exp(-t * (x / ref) ** sign / 30)
                + SIGMA * path
            )
    lr, bs = (xs, np.array([1])) if over == "lr" else (np.array([0.05]), xs.astype(int))
    shape = (lr.size, bs.size, n_seeds, t.size)
    return xr.Dataset(
        {"m": (("lr", "batch_size", "seed", "step"), data.reshape(shape))},
        coords={"lr": lr, "batch_size": bs, "seed": np.arange(n_seeds), "step": t.astype(int)},
    )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=500, help="synthetic sweeps per case")
    ap.add_argument("--baseline", action="store_true", help="also run the old method (plug-in score, percentile)")
    args = ap.parse_args(argv)
    header = f"{'case':<34} {'target':>7} {'nominal':>7} {'coverage':>9} {'mean width':>10} {'percentile cov.':>15}"
    if args.baseline:
        header += f" {'old method cov.':>15} {'old width':>9}"
    print(
        f"{args.draws} draws per case, {SEEDS} seeds, window {WINDOW}, AR(1) σ = {SIGMA}, ρ = {RHO:.3f}/record; "
        f"standard error of a coverage near 0.95: {math.sqrt(0.95 * 0.05 / args.draws):.3f}"
    )
    print(header + f" {'draws':>6}")
    times = []
    for shared in (True, False):
        for over, exponent, decay in CASES:
            truth = fit_collapse(
                family(over, exponent, shared=shared, seed=None, decay=decay),
                "m",
                over,
                window=WINDOW,
                n_boot=0,
                pairing="plain",
            ).exponent
            hit = hit_pct = hit_old = 0
            widths, widths_old = [], []
            for d in range(args.draws):
                ds = family(over, exponent, shared=shared, seed=1000 * d + 7, decay=decay)
                start = time.perf_counter()
                fit, boots = _fit(
                    ds,
                    "m",
                    over,
                    WINDOW,
                    1000,
                    d,
                    ci_level=0.95,
                    reference=None,
                    bounds=(-2.0, 5.0),
                    n_grid=200,
                    pairing="auto",
                )
                times.append(time.perf_counter() - start)
                hit += fit.ci_low <= truth <= fit.ci_high
                widths.append(fit.ci_high - fit.ci_low)
                lo, hi = np.percentile(boots, [2.5, 97.5])
                hit_pct += lo <= truth <= hi
                if args.baseline:
                    old, old_boots = _fit(
                        ds,
                        "m",
                        over,
                        WINDOW,
                        200,
                        d,
                        ci_level=0.95,
                        reference=None,
                        bounds=(-2.0, 5.0),
                        n_grid=200,
                        pairing="plain",
                    )
                    lo, hi = np.percentile(old_boots, [2.5, 97.5])
                    hit_old += lo <= truth <= hi
                    widths_old.append(hi - lo)
            n = args.draws
            cov = hit / n
            sym = "α" if over == "lr" else "β"
            streams = "shared" if shared else "independent"
            case = f"{over} {sym}={exponent:g}, {streams}{', weak' if decay < 0.1 else ''}"
            line = (
                f"{case:<34} {truth:>7.3f} {0.95:>7.2f} {cov:>9.3f} "
                f"{statistics.mean(widths):>10.3f} {hit_pct / n:>15.3f}"
            )
            if args.baseline:
                line += f" {hit_old / n:>15.3f} {statistics.mean(widths_old):>9.3f}"
            print(line + f" {n:>6}", flush=True)
    print(
        f"fit time per call (n_boot = 1000, 8 seeds, 301 steps): median {statistics.median(times):.3f} s, "
        f"max {max(times):.3f} s"
    )


if __name__ == "__main__":
    main()
