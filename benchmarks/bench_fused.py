"""The fused CPU path (``[train] fused = true``) against ``train()``, as a user runs the presets.

Run by hand (not a test)::

    python benchmarks/bench_fused.py [--threads 2] [--quick]

Each measurement is a fresh process (so its peak memory is its own): the
preset's configuration exactly as ``thermosgd reproduce PRESET --seeds S --steps
20000`` builds it (cheap instruments every 40 steps, probe-set instruments on 256
samples every 400; ``--quick`` trains fewer steps on that schedule), through
``train()`` and through the fused path with the same number of intra-op / kernel
threads, timed after imports and a warm-up (which also compiles or loads the
numba kernels). Throughput is replica-steps per second; peak memory is the
largest resident set of the process, sampled every 20 ms.

The two results are then compared (float32; equal to tolerance, not bit for
bit, docs/benchmarks.md): per replica, the largest relative difference of
the activation rate over the run (median over replicas, and how many replicas
separate by more than 1e-3 somewhere: SGD trajectories that pass a ReLU kink
within rounding distance part ways), and the fitted η exponent of both.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_whole_command import run  # noqa: E402  (a sibling script, not a package)

SCRIPT = r"""
import json, sys, time
import numpy as np, torch
import thermosgd
from thermosgd.presets import get, twolayer_config
name, seeds, steps, threads, fused, out = sys.argv[1:7]
seeds, steps, threads, fused = int(seeds), int(steps), int(threads), fused == "1"
torch.set_num_threads(threads)
cfg = twolayer_config(get(name), seeds=seeds, steps=20000).replace(train={"steps": steps, "fused": fused})
thermosgd.train(cfg.replace(train={"seeds": 2, "steps": 80}))  # warm-up (and numba's compile or cache load)
t0 = time.perf_counter()
ds = thermosgd.train(cfg)
dt = time.perf_counter() - t0
ds.to_netcdf(out)
R = ds.sizes["lr"] * ds.sizes["batch_size"] * ds.sizes["seed"]
print(json.dumps({"seconds": dt, "replicas": int(R), "rate": R * steps / dt}))
"""


def measure(name: str, seeds: int, steps: int, threads: int, fused: bool, out: Path) -> dict:
    wall, peak, stdout, _ = run(
        [sys.executable, "-c", SCRIPT, name, str(seeds), str(steps), str(threads), "1" if fused else "0", str(out)],
        dict(os.environ),
    )
    info = json.loads(stdout.strip().splitlines()[-1])
    info["peak"] = peak
    return info


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for both paths (default: all CPUs)")
    ap.add_argument("--quick", action="store_true", help="fewer steps (noisier)")
    args = ap.parse_args(argv)
    import tempfile

    import numpy as np

    print(f"{os.cpu_count()} CPUs, {args.threads} thread(s) for both paths, load average {os.getloadavg()[0]:.2f}")
    cases = [("fig3", 256, 1000 if args.quick else 20000), ("fig2-top", 64, 400 if args.quick else 20000)]
    import xarray as xr

    from thermosgd.analysis.collapse import fit_collapse

    with tempfile.TemporaryDirectory() as tmp:
        for name, seeds, steps in cases:
            ref = measure(name, seeds, steps, args.threads, False, Path(tmp) / "ref.nc")
            fus = measure(name, seeds, steps, args.threads, True, Path(tmp) / "fused.nc")
            print(
                f"{name:9s} {ref['replicas']:5d} replicas × {steps} steps:  "
                f"train() {ref['rate'] / 1e6:6.2f} M replica-steps/s, peak {ref['peak'] / 2**20:5.0f} MiB   "
                f"fused {fus['rate'] / 1e6:6.2f} M replica-steps/s, peak {fus['peak'] / 2**20:5.0f} MiB   "
                f"ratio {fus['rate'] / ref['rate']:5.2f}x",
                flush=True,
            )
            a, b = xr.load_dataset(Path(tmp) / "ref.nc"), xr.load_dataset(Path(tmp) / "fused.nc")
            live = ~(a.diverged.values | b.diverged.values)
            x, y = a.activation_rate.values[live], b.activation_rate.values[live]
            per = np.nanmax(np.abs(y - x) / np.maximum(np.abs(x), 1e-6), axis=-1)
            fits = [fit_collapse(d, "activation_rate", "lr") for d in (a, b)]
            print(
                f"          diverged: train() {int(a.diverged.sum())}, fused {int(b.diverged.sum())}; "
                f"activation rate, largest relative difference per live replica: median {np.median(per):.1e}, "
                f"{int((per > 1e-3).sum())}/{per.size} replicas above 1e-3; fitted α: "
                + "  vs  ".join(f"{f.exponent:.3f} [{f.ci_low:.3f}, {f.ci_high:.3f}]" for f in fits),
                flush=True,
            )
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
