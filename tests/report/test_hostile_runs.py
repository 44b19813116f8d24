"""`thermosgd report` on odd runs folders: one table of cases (issue 24).

Odd files are skipped with a one-line warning and the page is still written; a page
is written only where results of ours live, never over an ``index.html`` that is not
ours. Every user file is byte-identical afterwards.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from thermosgd.cli import main
from thermosgd.report import collect


def _files(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` except our page, by relative path (links by their target text)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = os.readlink(p).encode()
        elif p.is_file() and p.name != "index.html":
            out[rel] = p.read_bytes()
    return out


def _odd(runs: Path, case: str) -> Path:
    """Add the odd folder of ``case`` to ``runs``; returns it."""
    odd = runs / f"odd-{case}"
    odd.mkdir()
    if case == "config-list":
        (odd / "config.json").write_text("[1, 2, 3]")
    elif case == "config-int":
        (odd / "config.json").write_text("5")
    elif case == "summary-string":
        (odd / "config.json").write_text((runs / "fig3" / "config.json").read_text())
        (odd / "summary.json").write_text('"done"')
    elif case == "deeply-nested":
        (odd / "config.json").write_text("[" * 200_000 + "]" * 200_000)
    elif case == "wall-time-list":
        (odd / "drift.json").write_text(json.dumps({"experiment": "drift", "settings": {}, "fits": {}}))
        (odd / ".thermosgd-wall.json").write_text("[1, 2]")
    elif case == "nan-inf-bounds":
        summary = json.loads((runs / "fig3" / "summary.json").read_text())
        summary["collapse"]["activation_rate"]["bounds"] = [float("-inf"), float("nan")]
        summary["collapse"]["activation_rate"]["reference"] = float("inf")
        (runs / "fig3" / "summary.json").write_text(json.dumps(summary))  # Python writes NaN/Infinity
    elif case == "other-tool":
        (odd / "config.json").write_text(json.dumps({"model": "gpt2", "train": {"lr": 3e-4, "epochs": 3}}))
    elif case == "fifo-config":
        os.mkfifo(odd / "config.json")
    elif case == "unreadable":
        (odd / "config.json").write_text("{}")
    return odd


CASES = [
    # (case, the odd folder is named in a warning)
    ("config-list", True),
    ("config-int", True),
    ("summary-string", True),
    ("deeply-nested", True),
    ("wall-time-list", True),
    ("nan-inf-bounds", False),
    ("other-tool", True),
    ("fifo-config", True),
    ("unreadable", True),
]


@pytest.mark.parametrize(("case", "warned"), CASES)
def test_odd_folders_are_skipped_and_the_page_is_written(fake_runs, capsys, monkeypatch, case, warned):
    odd = _odd(fake_runs, case)
    if case == "unreadable":  # root reads anything, so the refusal of the OS is simulated
        import sys

        collect_module = sys.modules["thermosgd.report.collect"]  # the package re-exports a function of that name

        real = collect_module.identify

        def identify(folder):
            if folder == odd:
                raise PermissionError(13, "Permission denied", str(folder))
            return real(folder)

        monkeypatch.setattr(collect_module, "identify", identify)
    before = _files(fake_runs)
    assert main(["report", str(fake_runs), "--quiet"]) == 0
    out, err = capsys.readouterr()
    page = fake_runs / "index.html"
    assert out.strip() == str(page) and page.stat().st_size > 10_000
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == len(err.splitlines())  # one line each, no traceback
    if warned:
        if case == "wall-time-list":
            assert not warnings  # the run is read; only its wall time is unknown
        else:
            assert [w for w in warnings if str(odd) in w], err
    assert _files(fake_runs) == before


@pytest.mark.parametrize("case", ["user-page-without-results", "user-page-beside-results", "symlinked-page"])
def test_a_page_that_is_not_ours_is_never_overwritten(fake_runs, tmp_path, capsys, case):
    folder = tmp_path / "mine" if case == "user-page-without-results" else fake_runs
    folder.mkdir(exist_ok=True)
    target = tmp_path / "victim.html"
    target.write_text("<html>my own page</html>")
    if case == "symlinked-page":
        (folder / "index.html").symlink_to(target)
    else:
        (folder / "index.html").write_text("<html>my own page</html>")
    before = target.read_bytes(), (folder / "index.html").read_bytes()
    assert main(["report", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "index.html" in err[0]
    assert (target.read_bytes(), (folder / "index.html").read_bytes()) == before
    assert (folder / "index.html").is_symlink() == (case == "symlinked-page")


def test_no_page_where_no_results_live(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["report", str(tmp_path)]) == 2
    assert "no thermosgd results" in capsys.readouterr().err and not (tmp_path / "index.html").exists()


def test_our_page_is_rewritten(fake_runs, capsys):
    assert main(["report", str(fake_runs), "--quiet"]) == 0
    first = (fake_runs / "index.html").read_bytes()
    assert main(["report", str(fake_runs), "--quiet", "--margin", "0.3"]) == 0
    assert (fake_runs / "index.html").read_bytes() != first and "±30%" in (fake_runs / "index.html").read_text()


def test_the_recorded_margin_gives_the_same_word_and_report_margin_rejudges(fake_runs):
    """fig3 at 32 seeds × 20 000 steps gave α = 1.89 [1.84, 1.94] (issue 21): "close" at the recorded ±10%."""
    from thermosgd.analysis.verdict import Verdict

    v = Verdict("fig3", "activation_rate", "lr", "close", 2.0, 1.89, 1.84, 1.94, margin=0.1)
    summary = json.loads((fake_runs / "fig3" / "summary.json").read_text())
    summary["verdicts"] = [v.to_dict()]
    (fake_runs / "fig3" / "summary.json").write_text(json.dumps(summary))

    def word(margin):
        (sec,) = [s for s in collect(fake_runs, margin=margin).sections if s.name == "fig3"]
        return sec.claims[0].verdict

    assert (word(None), word(0.05), word(0.1)) == ("close", "disagrees", "close")
