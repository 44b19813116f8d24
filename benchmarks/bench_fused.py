"""The fused CPU path (``[train] fused = true``) against ``train()``, as a user runs the presets.

Run by hand (not a test)::

    python benchmarks/bench_fused.py [--threads 2] [--quick]

Each measurement is a fresh process (so its peak memory is its own): the
preset's configuration as ``thermosgd reproduce PRESET --seeds S --steps 20000``
builds it (the recording schedule of a 20 000-step run: cheap instruments every
40 steps, probe-set instruments on 256 samples every 400), trained for fewer
steps so a run takes seconds; ``train()`` and the fused path with the same
number of intra-op / kernel threads, timed after imports and a warm-up (which
also compiles or loads the numba kernels). Throughput is replica-steps per
second; peak memory is the largest resident set of the process, sampled every
20 ms. The two results are compared: largest relative difference of the
activation rate and ‖V‖ over the run (float32; equal to tolerance, not bit
for bit, see README "Fused CPU step").
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
np.savez(out, rate=ds.activation_rate.values, v=ds.v_norm.values)
R = ds.sizes["lr"] * ds.sizes["batch_size"] * ds.sizes["seed"]
print(json.dumps({"seconds": dt, "replicas": int(R), "rate": R * steps / dt}))
"""


def measure(name: str, seeds: int, steps: int, threads: int, fused: bool, out: Path) -> dict:
    wall, peak, stdout, _ = run([sys.executable, "-c", SCRIPT, name, str(seeds), str(steps), str(threads),
                                 "1" if fused else "0", str(out)], dict(os.environ))
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
    cases = [("fig3", 256, 1000 if args.quick else 4000), ("fig2-top", 64, 400 if args.quick else 1200)]
    with tempfile.TemporaryDirectory() as tmp:
        for name, seeds, steps in cases:
            ref = measure(name, seeds, steps, args.threads, False, Path(tmp) / "ref.npz")
            fus = measure(name, seeds, steps, args.threads, True, Path(tmp) / "fused.npz")
            a, b = np.load(Path(tmp) / "ref.npz"), np.load(Path(tmp) / "fused.npz")
            diff = max(float(np.nanmax(np.abs(b[k] - a[k]) / np.maximum(np.abs(a[k]), 1e-6))) for k in ("rate", "v"))
            print(f"{name:9s} {ref['replicas']:5d} replicas × {steps} steps:  "
                  f"train() {ref['rate'] / 1e6:6.2f} M replica-steps/s, peak {ref['peak'] / 2**20:5.0f} MiB   "
                  f"fused {fus['rate'] / 1e6:6.2f} M replica-steps/s, peak {fus['peak'] / 2**20:5.0f} MiB   "
                  f"ratio {fus['rate'] / ref['rate']:5.2f}x   max rel. difference {diff:.1e}", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
