"""Thread settings: OpenMP threads that sleep when they wait (the CLI), one intra-op thread for small work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from thermosgd.threads import threads_for

_ENTRY = """
import os, sys
sys.argv = ["thermosgd", "--version"]
from thermosgd.cli import entry
try:
    entry()
except SystemExit:
    pass
print(os.environ.get("OMP_WAIT_POLICY"), "torch" in sys.modules)
"""


@pytest.mark.parametrize("given, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_console_script_makes_openmp_threads_sleep_unless_told_otherwise(given, expected):
    """Set before torch (and so libgomp) loads, which is when libgomp reads it; a user's own choice stays."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
    out = subprocess.run([sys.executable, "-c", _ENTRY], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[-2:] == [expected, "False"]


def test_threads_for_small_work_uses_one_thread_and_restores_the_count():
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with threads_for(10):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with threads_for(10**9):
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(old)
