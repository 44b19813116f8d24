"""Wall time of the deep presets as studies: one source tree against another, in one run.

Each workload runs in a fresh subprocess with ``PYTHONPATH`` set to a source tree
(``--before`` and ``--after``), at the presets' default sizes, inline, on the digits
substitute. ``batched``: the same run with all of a study's seeds in one unit
(``thermosgd.sweep.units.STUDY_UNITS = 1``), which is what lets a unit's seeds train
as one ensemble; the default "auto" layout gives 16 units (one seed each up to 16 seeds).

Run: python benchmarks/bench_study_seed_ensembles.py --before OLD/src --after src [--only NAME ...]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

WORKLOADS = ["fig2-middle", "fig2-middle-online", "fig2-bottom", "fig11", "mechanism-deep"]
SNIPPET = """
import sys, thermosgd.sweep.units as units
if {batched}:
    units.STUDY_UNITS = 1
from thermosgd.cli import main
sys.exit(main(["reproduce", "{name}", "--out", "{out}", "--no-progress"]))
"""


def timed(src: str, name: str, batched: bool) -> float:
    with tempfile.TemporaryDirectory() as out:
        code = SNIPPET.format(batched=batched, name=name, out=out)
        env = {**os.environ, "PYTHONPATH": src}
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--only", nargs="*", default=WORKLOADS)
    ap.add_argument("--auto-after", nargs="*", default=["fig2-middle"], help="also time these after, auto layout")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()}", flush=True)
    for name in args.only:
        before = timed(args.before, name, False)
        after = timed(args.after, name, True)
        line = f"{name:20s} before {before:7.1f} s   after (one unit) {after:7.1f} s   ratio {before / after:5.1f}x"
        if name in args.auto_after:
            line += f"   after (auto layout) {timed(args.after, name, False):7.1f} s"
        print(line + f"   load {os.getloadavg()[0]:.1f}", flush=True)
    print(f"load average at end: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
