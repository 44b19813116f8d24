"""Sweep executors: worker processes and a local Dask cluster vs in-process.

Workload: a two-layer sweep (10 inputs × 10 hidden, one lr, |B| = 1) of
``--units`` units of ``--seeds-per-unit`` seeds, ``--steps`` SGD steps each.
The baseline is the in-process executor (one unit after another, one thread).
Every executor's wall time includes its start-up (worker processes import torch;
Dask starts a scheduler and nannies), so a small sweep shows what that costs and
a large one the speed-up from running units side by side. Each run's results
are checked to be bit-identical to the baseline's.

Run:  python benchmarks/bench_sweep_executors.py [--units 8] [--steps 4000] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from thermosgd.config import from_dict
from thermosgd.sweep.run import run_sweep


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=8)
    ap.add_argument("--seeds-per-unit", type=int, default=4)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    cfg = from_dict(
        {
            "model": {"inputs": 10, "hidden": 10},
            "train": {"seeds": args.units * args.seeds_per_unit, "steps": args.steps, "record_every": 100},
            "sweep": {"seeds_per_unit": args.seeds_per_unit},
        }
    )
    runs = [
        ("inline", {}),
        ("processes", {"executor": "processes", "workers": args.workers}),
        ("dask local", {"executor": "dask", "workers": args.workers}),
    ]
    print(f"{args.units} units × {args.seeds_per_unit} seeds × {args.steps} steps, {args.workers} workers")
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        for name, kwargs in runs:
            start = time.perf_counter()
            ds = run_sweep(cfg, Path(tmp) / name.replace(" ", "-"), progress=False, **kwargs)
            wall = time.perf_counter() - start
            if base is None:
                base, base_wall = ds, wall
            same = all(np.array_equal(ds[k].values, base[k].values, equal_nan=True) for k in base.data_vars)
            print(
                f"{name:<11} {wall:7.2f} s  {args.units / wall:6.2f} units/s  "
                f"x{base_wall / wall:4.2f} vs inline  bit-identical: {same}"
            )


if __name__ == "__main__":
    main()
