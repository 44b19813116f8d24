"""False-alarm rate and power of the verdict's direction test, on synthetic sweeps with a known answer.

The direction rule (``thermosgd.analysis.verdict.RULES["direction"]``): per swept value, the
change of the seed mean from the first to the last recorded step, with a 95% t-interval
over seeds; "opposite" when the strongest setting (largest η) changes significantly
against the claim (here: the claim says the metric falls), "no effect" when no setting
changes significantly.

Workload: 3 swept values η ∈ {0.025, 0.05, 0.1}, |B| = 1, seeds ∈ {2, 3, 4, 8, 16, 32}.
Replica s at η records m(0) = 0.5 + a_s + e₀ and m(T) = 0.5 + a_s + Δ(η) + e_T, with a
per-replica offset a_s ~ 0.05·N(0, 1) (cancels in the change) and measurement noise e ~ σ·ξ,
σ = 0.01, ξ Gaussian or Student-t with 3 degrees of freedom scaled to unit variance
(heavy tails). The per-replica change then has s.d. σ√2; the effect d is Δ at the
strongest setting over that s.d. (weaker settings: Δ·η/η_max).

Cases:
- ``null``: Δ = 0 everywhere. "opposite" is a false alarm (nominal 2.5%, one tail of a 95%
  interval); anything but "no effect" means a spurious change was seen (nominal 1 − 0.95³).
- ``fall d``: a small fall, as claimed. "opposite" must stay ≈ 0; "no effect" is a miss.
- ``rise d``: a small rise, against the claim. The rate of "opposite" is the power to see it.

Every draw uses the package's own :func:`direction_changes` and :func:`judge_direction` on an
``xarray`` dataset (trials as an extra dimension). Seeded (``--seed``, default 0).

Run:  OMP_NUM_THREADS=1 python benchmarks/bench_verdict_false_alarm.py [--trials 2000]
(2000 trials: about 2 min of one core; s.e. of a rate near 2.5%: 0.35%.)
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import xarray as xr

from thermosgd.analysis.verdict import FALLS, NO_EFFECT, OPPOSITE, direction_changes, judge_direction

LRS = np.array([0.025, 0.05, 0.1])
SIGMA = 0.01


def sweep(trials: int, seeds: int, d: float, tails: str, rng: np.random.Generator) -> xr.Dataset:
    """``trials`` synthetic sweeps with a change of ``d`` s.d. at the strongest η (sign: rise > 0)."""
    delta = d * SIGMA * math.sqrt(2) * LRS / LRS.max()
    shape = (trials, LRS.size, 1, seeds)
    offset = 0.05 * rng.standard_normal(shape)
    if tails == "t3":
        noise = rng.standard_t(3, size=(*shape, 2)) / math.sqrt(3.0)  # unit variance
    else:
        noise = rng.standard_normal((*shape, 2))
    m = 0.5 + offset[..., None] + SIGMA * noise
    m[..., 1] += delta[None, :, None, None]
    return xr.Dataset(
        {"activation_rate": (("trial", "lr", "batch_size", "seed", "step"), m)},
        coords={"trial": np.arange(trials), "lr": LRS, "batch_size": [1], "seed": np.arange(seeds), "step": [0, 3000]},
    )


def rates(trials: int, seeds: int, d: float, tails: str, rng: np.random.Generator) -> tuple[float, float]:
    """Share of trials judged "opposite" and "no effect"."""
    changes = direction_changes(sweep(trials, seeds, d, tails, rng), "activation_rate")
    assert len(changes) == trials * LRS.size
    words = [judge_direction(changes[k : k + LRS.size], FALLS).status for k in range(0, len(changes), LRS.size)]
    return words.count(OPPOSITE) / trials, words.count(NO_EFFECT) / trials


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    se = math.sqrt(0.025 * 0.975 / args.trials)
    print(f"{args.trials} trials per cell; s.e. of a rate near 2.5%: {100 * se:.2f}%")
    print(f"{'case':<14}{'noise':<7}" + "".join(f"{f'{n} seeds':>22}" for n in (2, 3, 4, 8, 16, 32)))
    print(" " * 21 + "".join(f"{'opposite / no effect':>22}" for _ in range(6)))
    start = time.perf_counter()
    for case, d, tails in (
        ("null", 0.0, "gauss"),
        ("null", 0.0, "t3"),
        ("fall d=0.5", -0.5, "gauss"),
        ("fall d=1", -1.0, "gauss"),
        ("rise d=0.5", 0.5, "gauss"),
        ("rise d=1", 1.0, "gauss"),
    ):
        cells = []
        for n in (2, 3, 4, 8, 16, 32):
            opp, none = rates(args.trials, n, d, tails, rng)
            cells.append(f"{100 * opp:6.1f}% / {100 * none:5.1f}%")
        print(f"{case:<14}{tails:<7}" + "".join(f"{c:>22}" for c in cells), flush=True)
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
