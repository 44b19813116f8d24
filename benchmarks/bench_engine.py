"""Ensemble engine vs a per-run PyTorch loop, on the fig3 and fig2-top workloads.

Run by hand (not a test):  .venv/bin/python benchmarks/bench_engine.py [--quick] [--reference]

First the default ``train()`` (the compiled kernels) on fig3 (256 seeds × 20 000 steps) and
fig2-top (64 seeds × 2000 steps) with each preset's own recording, against the per-run loop
below, both from the same run (issue 22's target: fig3 ≥ 2000×).

The baseline is the loop a paper author writes: ``nn.Module`` + ``torch.optim.SGD``,
a fresh sample each step, the activation rate on a probe batch and ‖V‖ recorded
every step, one run after another. The engine trains the whole grid
(η × |B| × seeds) at once and records the activation rate (exact for Gaussian
inputs), ‖V‖, ‖W‖ and the mean bias every step; probe-set instruments (loss,
gradient variance, on 16 probe samples) only at the start and end. Both use one
intra-op thread.
Throughput is replica-steps per second (one replica advanced by one SGD step).

The noise-model controls ("gd", "gaussian", "frozen", ``[train] noise``) use G =
``gd_batch`` samples per step and replica, so they are timed separately, on the
fig3 grid at G = 1024, in replica-steps/s and in per-sample gradients/s (× G).
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn as nn

from thermosgd.presets import get, twolayer_config
from thermosgd.twolayer.engine import train


def baseline(M: int, N: int, lrs, steps: int, probe_size: int = 256) -> float:
    """Replica-steps/s of one-run-at-a-time training over all lrs (after a warm-up run)."""
    _baseline_runs(M, N, lrs[:1], 20, probe_size)
    t0 = time.perf_counter()
    _baseline_runs(M, N, lrs, steps, probe_size)
    return len(lrs) * steps / (time.perf_counter() - t0)


def _baseline_runs(M: int, N: int, lrs, steps: int, probe_size: int) -> None:
    for i, lr in enumerate(lrs):
        torch.manual_seed(i)
        first, head = nn.Linear(M, N), nn.Linear(N, 1, bias=False)
        model = nn.Sequential(first, nn.ReLU(), head)
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        lossf = nn.BCEWithLogitsLoss()
        probe = torch.randn(probe_size, M)
        rates, norms = [], []
        for _ in range(steps):
            x = torch.randn(1, M)
            y = torch.randint(0, 2, (1,)).float()
            loss = lossf(model(x).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                rates.append((first(probe) > 0).float().mean().item())
                norms.append(head.weight.norm().item())


def engine(name: str, seeds: int, steps: int) -> tuple[float, int]:
    cfg = twolayer_config(get(name), seeds=seeds, steps=steps)
    # The baseline computes no loss or gradient variance: keep the engine's probe-set
    # instruments (run only at the first and last step here) small, so both do the same work.
    cfg = cfg.replace(train={"record_every": 1, "probe_every": steps}, data={"probe_size": 16})
    train(cfg.replace(train={"steps": 20, "probe_every": 20}))  # warm-up
    t0 = time.perf_counter()
    train(cfg)
    dt = time.perf_counter() - t0
    R = len(cfg.train.lr) * len(cfg.train.batch_size) * len(cfg.train.seeds)
    return R * steps / dt, R


def noise_models(seeds: int, steps: int, G: int = 1024) -> None:
    """Replica-steps/s of every noise model on the fig3 grid (4 η × ``seeds``)."""
    cfg = twolayer_config(get("fig3"), seeds=seeds, steps=steps)
    cfg = cfg.replace(train={"record_every": 10, "probe_every": steps, "gd_batch": G}, data={"probe_size": 16})
    for noise in ("sgd", "gd", "gaussian", "frozen"):
        c = cfg.replace(train={"noise": noise})
        train(c.replace(train={"steps": 10, "probe_every": 10}))  # warm-up
        t0 = time.perf_counter()
        train(c)
        dt = time.perf_counter() - t0
        R = len(c.train.lr) * len(c.train.seeds)
        rate = R * steps / dt
        extra = "" if noise == "sgd" else f"   = {rate * G:12,.0f} per-sample gradients/s"
        print(
            f"fig3 noise={noise:8s} replicas={R:4d} G={G if noise != 'sgd' else 1:5d}  "
            f"{rate:12,.0f} replica-steps/s{extra}",
            flush=True,
        )


def preset_run(name: str, seeds: int, steps: int, fused: bool = True) -> tuple[float, int]:
    """Replica-steps/s of ``train()`` on the preset as ``reproduce`` builds it for 20 000 steps (its own
    recording: cheap instruments every 40 steps, the probe set of 256 samples every 400), run for
    ``steps`` steps; ``fused`` False takes the torch reference backend."""
    cfg = twolayer_config(get(name), seeds=seeds, steps=20000).replace(train={"steps": steps, "fused": fused})
    train(cfg.replace(train={"seeds": 2, "steps": 800}))  # warm-up (and the kernels' compile or cache load)
    t0 = time.perf_counter()
    train(cfg)
    R = len(cfg.train.lr) * len(cfg.train.batch_size) * seeds
    return R * steps / (time.perf_counter() - t0), R


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer steps (noisier)")
    ap.add_argument("--reference", action="store_true", help="also time the torch reference backend (fused = false)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    steps = 300 if args.quick else 1500
    print(f"torch {torch.__version__}, threads = {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")
    # The default train() (compiled kernels) on each preset at its own recording, against the per-run loop.
    for name, M, seeds, run_steps in [("fig3", 10, 256, 20000), ("fig2-top", 100, 64, 2000)]:
        if args.quick:
            seeds, run_steps = seeds // 4, run_steps // 10
        base = baseline(M, M, get(name).params["train"]["lr"], steps)
        rate, R = preset_run(name, seeds, run_steps)
        print(
            f"{name:9s} default train(), {R} replicas × {run_steps} steps, the preset's recording: "
            f"{rate:12,.0f} replica-steps/s   per-run loop {base:9,.0f}   ratio {rate / base:7.1f}x",
            flush=True,
        )
        if args.reference:
            ref, _ = preset_run(name, seeds, run_steps, fused=False)
            print(f"{name:9s} torch reference backend (fused = false): {ref:12,.0f} replica-steps/s", flush=True)
    # Recording every step, probe set only at the ends (the baseline's work): the step itself.
    for name, seeds in [("fig3", 512), ("fig2-top", 64)]:
        eng, R = engine(name, seeds, steps)
        print(f"{name:9s} replicas={R:5d}  every-step recording: {eng:12,.0f} replica-steps/s", flush=True)
    noise_models(16, 60 if args.quick else 300)
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
