"""The whole ``reproduce`` command against in-memory ``thermosgd.train`` on the same config.

Run by hand (not a test)::

    python benchmarks/bench_whole_command.py [--seeds 256] [--steps 20000] [--preset fig3] [--old]

Both run as fresh processes, one after the other, on the same machine:

* ``train()``: ``thermosgd.train(cfg)`` in memory, timed after imports and a
  warm-up (what the engine benchmark measures);
* the command: ``thermosgd reproduce PRESET --seeds S --steps T`` from process
  start to exit: imports, planning, training (units, worker processes when the
  default executor picks them), writing units and ``results.nc``, the collapse
  fits with their bootstrap, the figures and the report;
* the sweep alone: ``run_sweep`` (executor "auto") in a fresh process, from
  start to exit: the command without the fits, figures and report.

Throughput is replica-steps per second (replicas × steps / wall time); the ratio
is command / train(). Peak memory is the largest sum of resident set sizes over
the process and all its children (worker processes included), sampled every
20 ms. The command's ``results.nc`` is compared bit for bit with train()'s
results. ``--old`` also times the layout before issue 12 (8 seeds per unit,
inline) through the same command.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TRAIN_SCRIPT = r"""
import json, resource, sys, time
import torch
import thermosgd
from thermosgd.presets import get, twolayer_config
from thermosgd.sweep.store import save_dataset
name, seeds, steps, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cfg = twolayer_config(get(name), seeds=seeds, steps=steps)
thermosgd.train(cfg.replace(train={"seeds": 2, "steps": 50}))  # warm-up
t0 = time.perf_counter()
ds = thermosgd.train(cfg)
dt = time.perf_counter() - t0
save_dataset(ds, out)
print(json.dumps({"seconds": dt, "threads": torch.get_num_threads(),
                  "replicas": int(ds.sizes["lr"] * ds.sizes["batch_size"] * ds.sizes["seed"])}))
"""


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def run(cmd: list[str], env: dict) -> tuple[float, int, str, float]:
    """Wall seconds, peak tree RSS (bytes), stdout and CPU seconds (user + system, the
    process and every descendant it waited for) of ``cmd``."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = [0]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss(proc.pid))
            time.sleep(0.02)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    t.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, peak[0], out, cpu


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="fig3")
    ap.add_argument("--seeds", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--old", action="store_true", help="also time 8 seeds per unit, inline (before issue 12)")
    args = ap.parse_args(argv)
    env = dict(os.environ)
    py = sys.executable
    print(
        f"{args.preset}, {args.seeds} seeds × {args.steps} steps; {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        wall, peak, out, cpu = run(
            [py, "-c", TRAIN_SCRIPT, args.preset, str(args.seeds), str(args.steps), str(tmp / "train.nc")], env
        )
        info = json.loads(out.strip().splitlines()[-1])
        rs = info["replicas"] * args.steps
        base = rs / info["seconds"]
        print(
            f"train() in memory      {info['seconds']:7.2f} s  {base / 1e6:6.3f} M replica-steps/s  "
            f"peak {peak / 2**20:6.0f} MiB  ({info['replicas']} replicas, {info['threads']} thread(s); "
            f"process {wall:.1f} s with imports and warm-up, {cpu:.1f} CPU s)"
        )

        _time_command(args, tmp, env, py, rs, base)
        _time_sweeps(args, tmp, env, py, rs, base)
    print(f"load average {os.getloadavg()[0]:.2f} at end")


def _time_command(args, tmp: Path, env: dict, py: str, rs: int, base: float) -> None:
    """Time ``thermosgd reproduce`` from process start to exit (with the plan it makes)."""
    plan = subprocess.run(
        [
            py,
            "-c",
            (
                "import sys; from thermosgd.presets import get, "
                "twolayer_config; from thermosgd.sweep.run import plan_sweep;"
                f"p = plan_sweep(twolayer_config(get('{args.preset}'), "
                f"seeds={args.seeds}, steps={args.steps}), executor='auto');"
                "print(len(p.units), p.call_seeds, p.executor, p.workers, p.cost.describe())"
            ),
        ],
        capture_output=True,
        text=True,
        env=env,
    ).stdout.split(maxsplit=4)
    cmd = [
        py,
        "-m",
        "thermosgd",
        "reproduce",
        args.preset,
        "--seeds",
        str(args.seeds),
        "--steps",
        str(args.steps),
        "--out",
        str(tmp / "cmd"),
        "--no-progress",
    ]
    wall, peak, _, cpu = run(cmd, env)
    print(
        f"reproduce (whole)      {wall:7.2f} s  {rs / wall / 1e6:6.3f} M replica-steps/s  "
        f"peak {peak / 2**20:6.0f} MiB  ({plan[0]} units, engine calls of {plan[1]} seeds, "
        f"executor {plan[2]}{'' if plan[3] == 'None' else ' × ' + plan[3]}; {cpu:.1f} CPU s; "
        f"estimated {plan[4].strip()})"
    )
    print(f"ratio command / train() = {base and rs / wall / base:.2f}")


def _time_sweeps(args, tmp: Path, env: dict, py: str, rs: int, base: float) -> None:
    """Time the sweep alone (and with ``--old`` the old layout); compare results.nc with train()'s."""
    sweep_only = (
        f"from thermosgd.presets import get, twolayer_config; from thermosgd.sweep.run import run_sweep;"
        f"run_sweep(twolayer_config(get('{args.preset}'), seeds={args.seeds}, steps={args.steps}),"
        f" '{tmp / 'sweep'}', executor='auto', progress=False)"
    )
    wall_s, peak_s, _, cpu_s = run([py, "-c", sweep_only], env)
    print(
        f"sweep only (run_sweep) {wall_s:7.2f} s  {rs / wall_s / 1e6:6.3f} M replica-steps/s  "
        f"peak {peak_s / 2**20:6.0f} MiB  ({cpu_s:.1f} CPU s; the command without fits, figures, "
        f"report); ratio to train() = {rs / wall_s / base:.2f}"
    )

    import numpy as np
    import xarray as xr

    a, b = xr.load_dataset(tmp / "train.nc"), xr.load_dataset(tmp / "cmd" / "results.nc")
    same = all(np.array_equal(a[v].values, b[v].values, equal_nan=True) for v in a.data_vars)
    print(f"results.nc bit-identical to train(): {same}")

    if args.old:
        old = (
            f"from thermosgd.presets import get, twolayer_config; from thermosgd.sweep.run import run_sweep;"
            f"cfg = twolayer_config(get('{args.preset}'), seeds={args.seeds}, steps={args.steps});"
            f"run_sweep(cfg.replace(sweep={{'seeds_per_unit': 8}}), '{tmp / 'old'}', executor='inline',"
            f" progress=False)"
        )
        wall, peak, _, cpu = run([py, "-c", old], env)
        print(
            f"sweep only, 8 seeds/unit inline (old layout) {wall:7.2f} s  {rs / wall / 1e6:6.3f} M replica-steps/s "
            f" peak {peak / 2**20:6.0f} MiB"
        )


if __name__ == "__main__":
    main()
