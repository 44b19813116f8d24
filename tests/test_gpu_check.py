"""benchmarks/gpu_check.sh, checked on the CPU: its syntax, and one case of its table at tiny size.

The script's real run needs a CUDA GPU (and is done by hand there); here ``--cpu-dry-run``
runs the same code path with device = "cpu" and a 64-replica grid, so a broken script is
found before a GPU machine is had.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_a_cpu_dry_run_prints_the_table():
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--cpu-dry-run", "--only", "fig3"], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("case"))
    row = lines[header + 1].split()
    assert row[:2] == ["two-layer", "fig3"] and float(row[4]) > 0  # a measured rate, not "skipped"
    assert "GPU-marked tests:" in proc.stdout and "total wall time" in proc.stdout
    bad = subprocess.run(["bash", str(SCRIPT), "--frobnicate"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
