"""Deep presets: all seeds × learning rates as one ensemble vs one run after another.

Run by hand (not a test)::

    python benchmarks/bench_deep_ensemble.py [--preset fig2-middle] [--seeds 2] [--steps 3000]

Workload: the preset's whole training at its default size (fig2-middle: 6-layer
fully connected net, width 100, |B| = 1, 3 learning rates × 2 seeds × 3000 steps,
and its instruments — probe loss, activation rates, per-sample gradient
variance and the Eq. 62 trace bound on 128 probe samples — at 30 log-spaced
steps), through ``train_sweep``: figures and files are not part of it.

Each path runs in a fresh process (so that its peak memory is its own): the
sequential loop with torch's default thread count (2 on a 2-core machine) and
with one thread, the ensemble with the default (it uses one intra-op thread
for fig2-middle's small per-step work, ``_threads_for``). The speed-up is taken
against the faster of the two sequential runs. The curves are compared: largest
relative difference over all recorded values.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SCRIPT = r"""
import dataclasses, json, resource, sys, time
import torch
from torch import nn
from thermosgd.data import load_dataset
from thermosgd import presets
from thermosgd.deep.runs import DeepSpec, _gaussian_set, _image_set, _instruments, _model
from thermosgd.deep.train import Run, train_sweep
from thermosgd.instruments import log_spaced
from thermosgd.sweep.store import save_dataset
name, seeds, steps, ensemble, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1", sys.argv[5]
if sys.argv[6] != "default":
    torch.set_num_threads(int(sys.argv[6]))
p = DeepSpec.from_preset(presets.get(name), seeds=seeds or None, steps=steps or None)
if p.dataset == "gaussian":
    images, shape, out_dim, loss_fn = None, (p.gaussian_dim,), 1, nn.BCEWithLogitsLoss()
else:
    images = load_dataset("digits", None, split="train")
    shape, out_dim, loss_fn = tuple(images.images.shape[1:]), len(images.classes), nn.CrossEntropyLoss()
def setup(seed):
    data = _gaussian_set(p, seed) if images is None else _image_set(p, images)
    model = _model(p, shape, out_dim, seed)
    return Run(model, data, _instruments(p, model, data, loss_fn))
kw = dict(lrs=p.lrs, batch_sizes=p.batch_sizes, seeds=range(p.seeds), steps=p.steps,
          schedule=log_spaced(p.steps, p.points), progress=False, ensemble=ensemble)
train_sweep(setup, loss_fn, **dict(kw, steps=20, schedule=log_spaced(20, 3)))  # warm-up (imports, allocator)
t0 = time.perf_counter()
ds = train_sweep(setup, loss_fn, **kw)
dt = time.perf_counter() - t0
save_dataset(ds, out)
runs = len(p.lrs) * len(p.batch_sizes) * p.seeds
print(json.dumps({"seconds": dt, "runs": runs, "steps": p.steps, "threads": torch.get_num_threads(),
                  "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="fig2-middle")
    ap.add_argument("--seeds", type=int, default=0, help="default: the preset's")
    ap.add_argument("--steps", type=int, default=0, help="default: the preset's")
    args = ap.parse_args(argv)
    print(
        f"{args.preset}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start"
        + ("" if args.preset == "fig2-middle" else "; image presets on the digits substitute")
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, flag, threads in (
            ("one run after another", "0", "default"),
            ("same, 1 thread", "0", "1"),
            ("ensemble", "1", "default"),
        ):
            path = Path(tmp) / f"{flag}.nc"
            proc = subprocess.run(
                [sys.executable, "-c", SCRIPT, args.preset, str(args.seeds), str(args.steps), flag, str(path), threads],
                capture_output=True,
                text=True,
            )
            if proc.returncode:
                raise SystemExit(proc.stderr)
            info = json.loads(proc.stdout.strip().splitlines()[-1])
            results[label] = info
            rate = info["runs"] * info["steps"] / info["seconds"]
            print(
                f"{label:<22} {info['seconds']:7.2f} s  {rate:9,.0f} "
                f"run-steps/s  peak {info['peak_rss'] / 2**20:5.0f} MiB"
                f"  ({info['runs']} runs × {info['steps']} steps, torch threads {info['threads']})"
            )
        seq = min(results[k]["seconds"] for k in ("one run after another", "same, 1 thread"))
        ens = results["ensemble"]["seconds"]
        print(f"speed-up ensemble / faster sequential = {seq / ens:.1f}x")

        import numpy as np
        import xarray as xr

        a, b = xr.load_dataset(Path(tmp) / "0.nc"), xr.load_dataset(Path(tmp) / "1.nc")
        worst = max(
            float(np.nanmax(np.abs(a[v].values - b[v].values) / np.maximum(np.abs(a[v].values), 1e-12)))
            for v in a.data_vars
            if v != "diverged"
        )
        print(
            f"largest relative difference between the two runs' records: {worst:.1e} "
            f"(diverged flags equal: {bool((a['diverged'] == b['diverged']).all())})"
        )
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
