"""The walk example runs (examples are scripts that CI runs)."""

import runpy
from pathlib import Path

import torch

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "walk_soret.py"


def test_walk_soret_example_runs(capsys):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runpy.run_path(str(EXAMPLE), run_name="__main__")
    finally:
        torch.set_num_threads(before)
    out = capsys.readouterr().out
    assert "measured  k =" in out and "Eq. 10    k = 1.000" in out
