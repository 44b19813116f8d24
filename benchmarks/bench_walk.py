"""Walk simulator (thermosgd.walk.simulate) vs a plain NumPy loop of the same walk.

Workload: Eq. 8 with g(q) = 1 + 0.5 sin(q), binary zeta, reflecting box [-pi/2, pi/2],
one coordinate. The baseline is the code one writes first: for every step, a Python
loop over particles using NumPy scalars. Both are timed in the same run; the
simulator includes all its per-step bookkeeping (g > 0 check, displacement moments).
Target: >= 2x the NumPy loop in particle-steps per second.

Run:  python benchmarks/bench_walk.py [--particles 100000] [--steps 200] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch

from thermosgd.walk import Reflect, parse_g, simulate

LO, HI = -math.pi / 2, math.pi / 2


def numpy_loop(q0: np.ndarray, eta: float, steps: int, seed: int) -> np.ndarray:
    """Baseline: per-particle Python loop, NumPy math, mirror walls."""
    rng = np.random.default_rng(seed)
    q = q0.copy()
    length = HI - LO
    for _ in range(steps):
        for i in range(q.shape[0]):
            g = 1.0 + 0.5 * np.sin(q[i])
            zeta = 1.0 if rng.random() < 0.5 else -1.0
            x = q[i] - eta * g * zeta
            y = np.mod(x - LO, 2 * length)
            q[i] = LO + (y if y < length else 2 * length - y)
    return q


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--particles", type=int, default=100_000, help="particles for the simulator")
    ap.add_argument("--loop-particles", type=int, default=2_000, help="particles for the NumPy loop")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the NumPy loop uses one core)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    g = parse_g("1 + 0.5*sin(q)")
    eta = 0.1
    q0 = torch.linspace(LO, HI, args.particles, dtype=torch.float64)[:, None]
    simulate(g, q0[:1000], eta, 5, domain=Reflect(LO, HI))  # warm-up
    t_sim = timed(lambda: simulate(g, q0, eta, args.steps, domain=Reflect(LO, HI), seed=0), args.repeats)
    q0_np = np.linspace(LO, HI, args.loop_particles)
    t_loop = timed(lambda: numpy_loop(q0_np, eta, args.steps, 0), 1)

    rate_sim = args.particles * args.steps / t_sim
    rate_loop = args.loop_particles * args.steps / t_loop
    print(f"workload: Eq. 8, g = 1 + 0.5 sin(q), binary zeta, reflecting box, {args.steps} steps, float64")
    print(
        f"thermosgd.walk.simulate : {args.particles:>8d} particles  {t_sim:8.3f} s  "
        f"{rate_sim:14.3e} particle-steps/s  (torch threads {torch.get_num_threads()})"
    )
    print(
        f"NumPy per-particle loop : {args.loop_particles:>8d} particles "
        f" {t_loop:8.3f} s  {rate_loop:14.3e} particle-steps/s"
    )
    ratio = rate_sim / rate_loop
    print(f"speed-up {ratio:.1f}x (target >= 2x): {'met' if ratio >= 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
