"""Runaway replicas of fig2-top (100×100, Gaussian inputs, |B| = 1): where SGD becomes unstable.

Run by hand (not a test):  .venv/bin/python benchmarks/runaway.py [--seeds 8] [--steps 20000]

1. The margin of the divergence criterion (``[train] runaway_factor`` = k): trains
   the preset's four η with the criterion off and prints, per η, the largest
   probe-loss ratio L_t/L_0 (and ‖W‖, ‖V‖ ratios) each replica reaches, and the
   step at which the runaway ones cross k·L_0 for several k.
2. At which η the net becomes unstable under the default initialization: the
   fraction of replicas flagged with the default k over a finer η grid.
3. Whether a smaller ``[model] init_scale`` makes all four of the paper's η stable.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from thermosgd.presets import get, twolayer_config
from thermosgd.twolayer.engine import train

KS = (3, 10, 30, 100, 1000)


def run(seeds: int, steps: int, **train_kw):
    cfg = twolayer_config(get("fig2-top"), seeds=seeds, steps=steps)
    model = train_kw.pop("model", {})
    cfg = cfg.replace(train={"record_every": 10, "probe_every": 100, **train_kw}, model=model)
    t0 = time.perf_counter()
    ds = train(cfg)
    return ds, time.perf_counter() - t0


def margins(seeds: int, steps: int) -> None:
    ds, dt = run(seeds, steps, runaway_factor=0.0)
    print(f"\n1. criterion off, {seeds} seeds x {steps} steps ({dt:.0f} s)")
    loss = ds.loss.dropna("step", how="all")
    loss = loss / loss.isel(step=0)
    print("   per replica, min / median / max over seeds:")
    print(
        "   eta      max_t L_t/L_0                 max_t |W_t|/|W_0|           max_t |V_t|/|V_0|         "
        "b mean at the end"
    )
    for lr in ds.lr.values:
        d = ds.sel(lr=lr).squeeze()
        cols = [
            loss.sel(lr=lr).squeeze().max("step").values,
            (d.w_norm / d.w_norm.isel(step=0)).max("step").values,
            (d.v_norm / d.v_norm.isel(step=0)).max("step").values,
            d.bias_mean.isel(step=-1).values,
        ]
        print(f"   {lr:<6g} " + "   ".join(f"{np.min(c):8.3g} {np.median(c):8.3g} {np.max(c):8.3g}" for c in cols))
    for lr in ds.lr.values:
        lo = loss.sel(lr=lr).squeeze().transpose("seed", "step").values
        rows = []
        for k in KS:
            first = [_first(loss.step.values, r > k) for r in lo]
            hit = [f for f in first if f is not None]
            rows.append(f"k={k}: {len(hit)}/{len(first)}" + (f" at steps {_spread(hit)}" if hit else ""))
        print(f"   eta = {lr:g}, first step with L_t > k L_0: " + "; ".join(rows))


def _first(steps, mask):
    idx = np.flatnonzero(mask)
    return int(steps[idx[0]]) if idx.size else None


def _spread(xs) -> str:
    xs = np.asarray(xs)
    return f"min {xs.min()}, median {int(np.median(xs))}, max {xs.max()}"


def threshold(seeds: int, steps: int, lrs) -> None:
    ds, dt = run(seeds, steps, lr=list(lrs))
    print(f"\n2. default init, default k, {seeds} seeds x {steps} steps ({dt:.0f} s): replicas flagged per eta")
    for lr in ds.lr.values:
        d = ds.diverged.sel(lr=lr).values.ravel()
        s = ds.diverged_step.sel(lr=lr).values.ravel()[d]
        print(
            f"   eta = {lr:<6g} (eta*E|x|^2 = {100 * lr:5.1f}): {d.sum()}/{d.size}"
            + (f", steps {_spread(s)}" if d.any() else "")
        )


def init_scales(seeds: int, steps: int, scales) -> None:
    print(f"\n3. smaller init_scale, default k, {seeds} seeds x {steps} steps: replicas flagged per eta")
    for sc in scales:
        ds, dt = run(seeds, steps, model={"init_scale": sc})
        flagged = ", ".join(f"{lr:g}: {int(ds.diverged.sel(lr=lr).sum())}/{ds.sizes['seed']}" for lr in ds.lr.values)
        rate0 = float(ds.activation_rate.isel(step=0).mean())
        rate = ", ".join(
            f"{lr:g}: {float(ds.activation_rate.sel(lr=lr).isel(step=-1).where(~ds.diverged.sel(lr=lr)).mean()):.3f}"
            for lr in ds.lr.values
        )
        print(f"   init_scale = {sc:<5g} ({dt:.0f} s) flagged {flagged}; activation rate {rate0:.3f} -> {rate}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--parts", default="123")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, threads = {torch.get_num_threads()}")
    if "1" in args.parts:
        margins(args.seeds, args.steps)
    if "2" in args.parts:
        threshold(args.seeds, args.steps, (0.05, 0.06, 0.07, 0.075, 0.08, 0.0825, 0.085, 0.0875, 0.09, 0.1))
    if "3" in args.parts:
        init_scales(args.seeds, args.steps, (1.0, 0.5, 0.25, 0.1))


if __name__ == "__main__":
    main()
