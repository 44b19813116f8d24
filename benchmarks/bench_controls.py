"""The noise-model controls ("gd", "gaussian", "frozen", and SVAG) against a plain batched-torch step.

Run by hand (not a test):  .venv/bin/python benchmarks/bench_controls.py [--quick] [--steps N] [--plain-steps N]

The grid is fig3's: 4 η × 16 seeds (64 replicas) of the 10×10 net, Gaussian inputs,
random labels, bce, G = ``gd_batch`` = 1024 samples per step and replica, float64,
one thread. The baseline (:func:`plain_run`) is the step a user writes in batched
torch without this package: fresh samples per seed, per-sample gradients formed
explicitly, their mean and (for "gaussian") a noise vector with the covariance of the
per-sample gradients over |B|, no recording. ``train()`` is timed as a user calls it,
with the default backend, cheap instruments every 10 steps and the probe set at the
end, for 2000 steps (the mechanism preset's length; its set-up, the initial statistics and
the first chunk's draws, is part of the time), and the plain step, which has no set-up, for
200 (its rate does not depend on the run's length). Both numbers and their ratio come from
one run; throughput is replica-steps/s.

The plain step runs on one torch thread; ``train()`` runs its kernel on this thread, with a
drawing thread and a spare kernel thread at the lowest priority beside it (both cores of the
2-core machine the targets were set on).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from thermosgd.presets import get, twolayer_config
from thermosgd.twolayer.engine import train

N = M = 10
ETAS = (0.025, 0.05, 0.075, 0.1)


def plain_step(W, b, V, lr, x, y, noise: str, z: torch.Tensor | None, scale: torch.Tensor | None, bs: float):
    """One step of R replicas: W (R, N, M), b, V (R, N), lr (R,), x (R, G, M), y (R, G).

    The mean gradient is a batched backward pass (what autograd does for the mean loss);
    only "gaussian", whose noise needs the per-sample gradients, forms them.
    """
    G = x.shape[1]
    pre = torch.baddbmm(b[:, None, :], x, W.mT)  # (R, G, N)
    act = pre.clamp_min(0.0)
    f = torch.bmm(act, V[..., None])[..., 0]
    e = torch.sigmoid(f) - y  # ∂ℓ/∂f of bce, (R, G)
    delta = e[..., None] * (pre > 0) * V[:, None, :]  # ∂ℓ/∂b per sample, (R, G, N)
    step = torch.cat(
        [torch.bmm(delta.mT, x).flatten(1) / G, delta.mean(1), torch.bmm(e[:, None, :], act)[:, 0] / G], -1
    )  # ḡ, (R, P) ordered (W row-major, b, V)
    if noise == "gaussian" and z is not None:  # ξ = Σ_i z_i (g_i − ḡ) / √(|B|(G−1)): covariance Σ̂/|B| given the samples
        grads = torch.cat([(delta[..., None] * x[:, :, None, :]).flatten(2), delta, e[..., None] * act], -1)
        step = step + torch.einsum("rg,rgp->rp", z, grads - step[:, None]) / (bs * (G - 1)) ** 0.5
    elif noise == "frozen" and scale is not None and z is not None:
        step = step + scale * z
    step = lr[:, None] * step
    W -= step[:, : N * M].view(W.shape)
    b -= step[:, N * M : N * M + N]
    V -= step[:, N * M + N :]


def plain_run(noise: str, seeds: int, steps: int, G: int) -> float:
    """Replica-steps/s of the plain batched step on the grid (shared samples per seed, as the presets)."""
    gen = torch.Generator().manual_seed(0)
    R, P = len(ETAS) * seeds, N * M + 2 * N
    W = torch.randn(R, N, M, generator=gen, dtype=torch.float64) / M**0.5
    b = torch.zeros(R, N, dtype=torch.float64)
    V = torch.randn(R, N, generator=gen, dtype=torch.float64) / N**0.5
    lr = torch.tensor(ETAS, dtype=torch.float64).repeat_interleave(seeds)
    scale = torch.full((R, P), 0.1, dtype=torch.float64)
    t0 = time.perf_counter()
    for step in range(-2, steps):  # two warm-up steps (torch's first-call allocations), then timed
        if step == 0:
            t0 = time.perf_counter()
        x = torch.randn(seeds, G, M, generator=gen, dtype=torch.float64).repeat(len(ETAS), 1, 1)
        y = torch.randint(0, 2, (seeds, G), generator=gen).double().repeat(len(ETAS), 1)
        z = torch.randn(R, G if noise == "gaussian" else P, generator=gen, dtype=torch.float64)
        plain_step(W, b, V, lr, x, y, noise, z, scale, 1.0)
    return R * steps / (time.perf_counter() - t0)


def engine_run(noise: str, seeds: int, steps: int, G: int, svag: int = 1) -> float:
    """Replica-steps/s of ``train()`` on the same grid (updates/s for SVAG: l per configured step)."""
    cfg = twolayer_config(get("fig3"), seeds=seeds, steps=steps)
    cfg = cfg.replace(
        train={"noise": noise, "gd_batch": G, "dtype": "float64", "record_every": 10, "probe_every": steps, "svag": 1}
    )
    train(cfg.replace(train={"steps": 10, "probe_every": 10}))  # warm-up (and the kernels' compile or cache load)
    cfg = cfg.replace(train={"svag": svag})
    t0 = time.perf_counter()
    train(cfg)
    return len(ETAS) * seeds * steps * svag / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer steps (noisier)")
    ap.add_argument("--steps", type=int, default=0, help="steps of train() (default 2000, --quick 200)")
    ap.add_argument("--plain-steps", type=int, default=0, help="steps of the plain step (default 200, --quick 40)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    steps = args.steps or (200 if args.quick else 2000)
    plain_steps = args.plain_steps or (40 if args.quick else 200)
    seeds, G = 16, 1024
    print(f"torch {torch.__version__}, 1 thread, load average {os.getloadavg()[0]:.2f} at start")
    print(f"fig3 grid: {len(ETAS)} η × {seeds} seeds, G = {G}, float64; train() {steps} steps, plain {plain_steps}")
    # Both paths first run once, untimed, in this process: the plain step ran 1.7-2x faster once
    # train() had run (measured: 3.0-3.6 k replica-steps/s before, 6.1-6.3 k after; loading the
    # compiled kernels alone took it to 4.9 k), so the first baseline measured cold was too slow.
    for noise in ("gd", "gaussian", "frozen"):
        engine_run(noise, seeds, 10, G)
        plain_run(noise, seeds, 4, G)
    for noise in ("gd", "gaussian", "frozen"):
        base = plain_run(noise, seeds, plain_steps, G)
        eng = engine_run(noise, seeds, steps, G)
        print(
            f"  {noise:9s} plain batched torch {base:10,.0f}   train() {eng:10,.0f} replica-steps/s   "
            f"ratio {eng / base:5.1f}x",
            flush=True,
        )
    eng = engine_run("gaussian", seeds, max(10, steps // 40 * 10), G, svag=4)
    print(f"  gaussian, svag = 4: train() {eng:10,.0f} updates/s (4 per configured step)", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
