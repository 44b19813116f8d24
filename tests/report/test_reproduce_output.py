"""What ``thermosgd reproduce`` prints and where it writes: verdict lines and the closing table with or
without progress bars, the wall time per section, and quick runs beside default ones (issue 24)."""

from __future__ import annotations

import shlex

import pytest

from thermosgd.cli import main
from thermosgd.report import collect


@pytest.mark.slow
def test_no_progress_drops_only_the_bars_and_quick_runs_beside_a_default_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", "fig5", "--seeds", "2", "--steps", "20", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "[fig5] activation_rate: " in out and "[fig6] v_norm: " in out  # the verdict lines
    assert "what is compared" in out and "verdict" in out  # the closing table
    assert "wall time per section:" in out and "\nfig5 " in out and "\ntotal " in out
    assert (tmp_path / "runs" / "fig5" / "summary.json").exists()
    # A smoke test after a default run goes to its own folder instead of being refused there.
    assert main(["reproduce", "fig5", "--quick", "--no-progress"]) == 0
    assert (tmp_path / "runs-quick" / "fig5" / "summary.json").exists()
    assert (tmp_path / "runs-quick" / "index.html").exists()
    # The rerun command each page offers works (it resumes the finished sweep and judges it again).
    for runs in ("runs", "runs-quick"):
        (sec,) = [s for s in collect(tmp_path / runs).sections if s.name == "fig5"]
        argv = shlex.split(sec.command)
        assert argv[:2] == ["thermosgd", "reproduce"]
        assert main([*argv[1:], "--no-progress"]) == 0, sec.command
