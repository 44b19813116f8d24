"""Every script in examples/ runs (examples are scripts that CI runs)."""

import runpy
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))
# What each example must print (beyond printing something).
EXPECT = {
    "walk_soret.py": ["measured  k =", "Eq. 10    k = 1.000"],
    "two_layer_quickstart.py": ["fitted collapse exponent"],
    "drift_vs_theory.py": ["Itô"],
    "instruments_in_your_loop.py": ["grad_var"],
    "study_your_model.py": ["activation_rate", "grad_var collapses over lr"],
}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples may write files
    runpy.run_path(str(path), run_name="__main__")
    out = capsys.readouterr().out
    assert out.strip()
    for text in EXPECT.get(path.name, []):
        assert text in out
