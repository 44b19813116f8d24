"""One collapse fit (1000 bootstrap resamples) at many seeds: the two evaluations and the old contraction.

Run by hand (not a test)::

    python benchmarks/bench_collapse_fit.py [--seeds 8,64,256,1024] [--repeats 3] [--old] [--results PATH]

Workload: ``fit_collapse(ds, "activation_rate", "lr")`` with the defaults (n_boot = 1000,
200 grid points, pairing auto) on a sweep shaped like ``reproduce fig3 --steps 20000``:
η ∈ {0.025, 0.05, 0.075, 0.1}, 501 recorded steps, S seeds. Synthetic by default
(m(t) = 0.5 − 0.2·A_s·(1 − exp(−t·(η/0.05)²/4000)) plus AR(1) noise shared by the η of a
seed, A_s = 1 + 0.15·N(0, 1)); ``--results`` takes the first S seeds of a saved
``results.nc`` instead (e.g. the one ``reproduce fig3 --seeds 256 --steps 20000`` writes).

Each fit runs in this process with each evaluation of the score's quadratic form forced:

* ``sums``: from the interpolated seed-weighted sums (cost per resample and exponent
  independent of S);
* ``forms``: ``w·M·w`` with the ``(S, S)`` forms, as a matrix product per exponent;
* ``--old``: the same forms contracted with ``np.einsum("bs,jest,bt->bje", optimize=True)``
  as before this benchmark existed (numpy's path for it is a plain loop, ``O(B·E·S²)``
  without BLAS); slow, only for S ≤ 256.

Printed: the best and median wall time of ``--repeats`` fits each, which evaluation
``fit_collapse`` picks by itself, and the largest difference of the fitted exponent and
interval ends from the ``sums`` fit. BLAS threads are numpy's default unless
``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` say otherwise.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import xarray as xr

from thermosgd.analysis import collapse
from thermosgd.analysis.collapse import _data, _fit, _score

LRS = np.array([0.025, 0.05, 0.075, 0.1])
STEPS, EVERY = 20000, 40


def synthetic(n_seeds: int, seed: int = 0) -> xr.Dataset:
    """A fig3-shaped sweep with a known α = 2, ``(lr, batch_size, seed, step)``."""
    rng = np.random.default_rng(seed)
    t = np.arange(0, STEPS + 1, EVERY, dtype=float)
    rho = math.exp(-EVERY / 400)
    z = rng.standard_normal((n_seeds, t.size))
    noise = np.empty_like(z)
    noise[:, 0] = z[:, 0]
    for i in range(1, t.size):
        noise[:, i] = rho * noise[:, i - 1] + math.sqrt(1 - rho**2) * z[:, i]
    amp = 1 + 0.15 * rng.standard_normal(n_seeds)
    data = np.empty((LRS.size, 1, n_seeds, t.size))
    for k, lr in enumerate(LRS):
        master = 1 - np.exp(-t * (lr / 0.05) ** 2 / 4000)
        data[k, 0] = 0.5 - 0.2 * amp[:, None] * master[None, :] + 0.01 * noise
    return xr.Dataset(
        {
            "activation_rate": (("lr", "batch_size", "seed", "step"), data),
            "diverged": (("lr", "batch_size", "seed"), np.zeros(data.shape[:3], bool)),
        },
        coords={"lr": LRS, "batch_size": [1], "seed": np.arange(n_seeds), "step": t.astype(int)},
    )


def old_scores(self, exponents):
    """``_Forms.scores`` with the contraction used before (one einsum over all forms)."""
    out = np.empty((self.weights.shape[0], exponents.size))
    for lo in range(0, exponents.size, _score._CHUNK):
        mats, norm = self.scorer.forms(exponents[lo : lo + _score._CHUNK])
        quad = np.einsum("bs,jest,bt->bje", self.weights, mats, self.weights, optimize=True)
        total = (quad / self.dens[:, :, None]).sum(axis=1)
        out[:, lo : lo + _score._CHUNK] = np.where(norm > 0, total / np.where(norm > 0, norm, 1.0), np.inf)
    return out


def timed_fits(ds: xr.Dataset, variant: str, repeats: int):
    """Best and median seconds of ``repeats`` fits with one evaluation forced, and the last fit."""
    saved = _score._FORMS_RATIO, _score._Forms.scores
    _score._FORMS_RATIO = 0.0 if variant == "sums" else math.inf
    if variant == "old":
        _score._Forms.scores = old_scores
    times = []
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            fit = collapse.fit_collapse(ds, "activation_rate", "lr")
            times.append(time.perf_counter() - start)
    finally:
        _score._FORMS_RATIO, _score._Forms.scores = saved
    return min(times), statistics.median(times), fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="8,64,256,1024", help="comma-separated seed counts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--old", action="store_true", help="also the einsum contraction used before (S ≤ 256)")
    parser.add_argument("--results", help="a results.nc to take the seeds from instead of the synthetic sweep")
    args = parser.parse_args()
    real = xr.load_dataset(args.results) if args.results else None
    print(
        f"{'S':>5} {'auto':>5} {'variant':>7} {'best s':>8} {'median s':>9} {'vs sums':>8} "
        f"{'|Δ exponent|':>13} {'|Δ CI|':>9}  exponent [CI]"
    )
    for n_seeds in (int(s) for s in args.seeds.split(",")):
        if real is not None and n_seeds > real.sizes["seed"]:
            print(f"{n_seeds:>5} skipped: the results hold {real.sizes['seed']} seeds")
            continue
        ds = real.isel(seed=slice(0, n_seeds)) if real is not None else synthetic(n_seeds)
        values, steps, raw, alive = collapse.sweep_data(ds, "activation_rate", "lr")
        grid = _data._grid(steps, (None, None), 200)
        method = _fit._score_method(ds, alive, "auto")
        auto = _score._Scorer(raw, alive, steps, values, "lr", collapse.default_reference(values), grid, method).route()
        variants = ["sums", "forms"] + (["old"] if args.old and n_seeds <= 256 else [])
        base = None
        for variant in variants:
            best, median, fit = timed_fits(ds, variant, args.repeats)
            if base is None:
                base = (best, fit)
            d_exp = abs(fit.exponent - base[1].exponent)
            d_ci = max(abs(fit.ci_low - base[1].ci_low), abs(fit.ci_high - base[1].ci_high))
            print(
                f"{n_seeds:>5} {auto:>5} {variant:>7} {best:8.3f} {median:9.3f} {best / base[0]:7.2f}× "
                f"{d_exp:13.1e} {d_ci:9.1e}  {fit.exponent:.4f} [{fit.ci_low:.4f}, {fit.ci_high:.4f}]",
                flush=True,
            )


if __name__ == "__main__":
    main()
