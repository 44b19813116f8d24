"""The GPU benchmarks of ``gpu_check.sh``: each case in its own process, one table at the end.

Run by hand::

    python benchmarks/gpu_bench.py                 # on a CUDA machine
    python benchmarks/gpu_bench.py --cpu-dry-run   # the same cases at tiny sizes on the CPU

Cases: the two-layer presets fig3 and fig2-top on grids of at least 65 536 replicas
(the preset's own recording, ``thermosgd.train`` with ``device = "cuda"``), one deep
preset (fig2-middle at its quick and default sizes, as a study on the GPU) and a study (the spec of
``examples/study_your_model.py`` with ``[train] device`` set). A case that
cannot run here (a missing module, no GPU, a timeout) is a row saying why, not a
failure of the whole check. Throughput is replica-steps per second of the training loop
(``engine._integrate``: steps, draws, records), timed after a warm-up run (CUDA
initialization, kernel caches); the whole ``train()``'s rate, set-up and assembly included,
is in the note under the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TWOLAYER = r"""
import json, sys
import thermosgd
from thermosgd.presets import get, twolayer_config
name, replicas, steps, device = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cfg = twolayer_config(get(name), seeds=2, steps=20000)
seeds = -(-replicas // (len(cfg.train.lr) * len(cfg.train.batch_size)))
cfg = twolayer_config(get(name), seeds=seeds, steps=20000).replace(train={"steps": steps, "device": device})
thermosgd.train(cfg.replace(train={"seeds": 2, "steps": 2 * cfg.train.record_every}))  # warm-up

sys.path.insert(0, "benchmarks")
from gpu_profile import timed_train  # train()'s seconds and the training loop's own
dt, loop = timed_train(cfg, device)
R = len(cfg.train.lr) * len(cfg.train.batch_size) * len(cfg.train.seeds)
print(json.dumps({"replicas": int(R), "steps": steps, "seconds": dt, "rate": R * steps / loop,
    "whole": R * steps / dt, "note": f"whole train() {R * steps / dt:.3g}/s: set-up and assembly "
            f"{dt - loop:.1f} s of {dt:.1f} s"}))
"""

DEEP = r"""
import json, sys, tempfile, time
from pathlib import Path
from thermosgd.reproduce.deep import reproduce_deep
device, quick = sys.argv[1], sys.argv[2] == "quick"
with tempfile.TemporaryDirectory() as tmp:
    t0 = time.perf_counter()
    reproduce_deep("fig2-middle", Path(tmp) / "run", quick=quick, progress=False, device=device)
    print(json.dumps({"seconds": time.perf_counter() - t0}))
"""

STUDY = r"""
import copy, importlib.util, json, sys, time
import thermosgd
device, example = sys.argv[1], sys.argv[2]
spec_ = importlib.util.spec_from_file_location("example", example)
mod = importlib.util.module_from_spec(spec_)
spec_.loader.exec_module(mod)
spec = copy.deepcopy(mod.SPEC)
spec["train"]["device"] = device
t0 = time.perf_counter()
ds = thermosgd.study(spec)
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def run_case(argv: list[str], timeout: float, env: dict) -> tuple[dict | None, str]:
    """The JSON line a case printed last, or None and the reason (its last error line, or a timeout)."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == 0 and lines:
        return json.loads(lines[-1]), ""
    err = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
    return None, err[:160]


def cases(dry: bool) -> list[tuple[str, str, list[str], float, float | None]]:
    """(name, size, argv, timeout s, target replica-steps/s or None) of every case."""
    device = "cpu" if dry else "cuda"
    replicas = 64 if dry else 65536
    py = sys.executable
    out = [
        ("two-layer fig3", f"{replicas} replicas", ["-c", TWOLAYER, "fig3", str(replicas), "80" if dry else "8000"]),
        (
            "two-layer fig2-top",
            f"{replicas} replicas",
            ["-c", TWOLAYER, "fig2-top", str(replicas), "40" if dry else "1600"],
        ),
    ]
    targets = {"two-layer fig3": 1e8, "two-layer fig2-top": 1e7}
    rows: list[tuple[str, str, list[str], float, float | None]] = [
        (n, size, [py, *a, device], 120.0, targets[n]) for n, size, a in out
    ]
    rows.append(("deep fig2-middle (quick)", "3 η × 2 seeds", [py, "-c", DEEP, device, "quick"], 120.0, None))
    if not dry:  # the preset's default size (about 11 s on two CPU cores)
        rows.append(("deep fig2-middle (default)", "3 η × 8 × 3000", [py, "-c", DEEP, device, "full"], 150.0, None))
    example = ROOT / "examples" / "study_your_model.py"
    rows.append(
        ("study (examples/study_your_model.py)", "the example's", [py, "-c", STUDY, device, str(example)], 120.0, None)
    )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpu-dry-run", action="store_true", help="tiny sizes on the CPU: checks the plumbing only")
    ap.add_argument("--only", default="", help="only the cases whose name contains this")
    args = ap.parse_args()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    table = []
    notes: list[str] = []
    for name, size, argv, timeout, target in cases(args.cpu_dry_run):
        if args.only not in name:
            continue
        t0 = time.perf_counter()
        result, why = run_case(argv, timeout, env)
        wall = f"{time.perf_counter() - t0:.0f} s"
        if result is None:
            table.append((name, size, "-", wall, f"skipped: {why}"))
        elif "rate" in result:
            verdict = "ran" if target is None else ("meets" if result["rate"] >= target else "below") + f" {target:.0e}"
            table.append((name, size, f"{result['rate']:.3g}", wall, verdict))
            if result.get("note"):
                notes.append(f"{name}: {result['note']}")
        else:
            table.append((name, size, "-", f"{result['seconds']:.0f} s", "ran"))
    print(f"\n{'case':38s} {'size':16s} {'replica-steps/s':>16s} {'wall':>7s}  result")
    for row in table:
        print(f"{row[0]:38s} {row[1]:16s} {row[2]:>16s} {row[3]:>7s}  {row[4]}")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
