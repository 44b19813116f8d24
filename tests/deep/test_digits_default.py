"""Without the paper's image files the default command runs the image presets on digits and says
"substitute: digits" everywhere the result appears (issue 20 items 5); with the files, the real data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from thermosgd.errors import UsageError
from thermosgd.reproduce import deep as deep_module
from thermosgd.reproduce.run import reproduce

MARK = "substitute: digits"


def _cifar(folder, rng, n=10):
    folder.mkdir(parents=True)
    for i in range(1, 6):
        records = rng.integers(0, 256, (n, 3073), dtype=np.uint8)
        records[:, 0] = rng.integers(0, 10, n)
        (folder / f"data_batch_{i}.bin").write_bytes(records.tobytes())


@pytest.fixture
def titles(monkeypatch):
    """The titles the figures are drawn with."""
    seen: list[str] = []
    real = deep_module.sweep_figure

    def spy(*args, **kwargs):
        seen.append(kwargs["title"])
        return real(*args, **kwargs)

    monkeypatch.setattr(deep_module, "sweep_figure", spy)
    return seen


def test_absent_files_mean_digits_marked_everywhere(tmp_path, monkeypatch, capsys, titles):
    monkeypatch.delenv("THERMOSGD_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    # The preset's own batch sizes (250, 500, 1000 of digits' 1437 training samples), 4 seeds, a few steps.
    folder = reproduce(["fig13"], seeds=4, steps=3, progress=False, out=tmp_path / "out")["fig13"]
    printed = capsys.readouterr().out
    table = printed[printed.index("experiment") :]
    assert f"fig13 ({MARK}; |B| ≤ 1000 of 1437 samples)" in table  # the closing table, in words
    assert "CIFAR-10 files are absent" in printed
    page = (tmp_path / "out" / "index.html").read_text()
    summary_rows = page[page.index('<section id="summary">') : page.index("</section>")]
    assert f"fig13 ({MARK}" in summary_rows
    assert titles and all(MARK in t and "on CIFAR-10" not in t for t in titles)
    assert all("digits-substitute" in p.name for p in (folder / "figures").iterdir())
    assert "Substitute data: digits" in (folder / "report.md").read_text()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["substitute"] == "digits" and summary["dataset_paper"] == "cifar10"
    assert "1437" in summary["verdicts"][0]["note"]  # the verdict says |B| is a large share of the set
    marker = json.loads((folder / ".thermosgd-run.json").read_text())
    assert marker["substitute_digits"]  # the rerun command names the substitute


def test_files_present_mean_the_real_data_and_no_marker(tmp_path, monkeypatch, capsys, titles):
    _cifar(tmp_path / "data" / "cifar-10-batches-bin", np.random.default_rng(1))
    monkeypatch.setenv("THERMOSGD_DATA", str(tmp_path / "data"))
    folder = reproduce(["fig11"], quick=True, progress=False, out=tmp_path / "out")["fig11"]
    printed = capsys.readouterr().out
    assert "substitute" not in printed[printed.index("experiment") :]
    assert json.loads((folder / "config.json").read_text())["dataset"] == "cifar10"
    assert titles and not any("substitute" in t for t in titles)
    assert not any("substitute" in p.name for p in (folder / "figures").iterdir())
    assert json.loads((folder / "summary.json").read_text()).get("substitute", "") == ""


def test_a_data_dir_without_the_files_is_an_error_not_a_substitute(tmp_path):
    with pytest.raises(UsageError, match="digits"):
        reproduce(["fig11"], quick=True, progress=False, out=tmp_path / "out", data_dir=tmp_path)


def test_the_substitute_flag_still_forces_digits(tmp_path, monkeypatch):
    _cifar(tmp_path / "data" / "cifar-10-batches-bin", np.random.default_rng(2))
    monkeypatch.setenv("THERMOSGD_DATA", str(tmp_path / "data"))
    folder = reproduce(["fig12"], quick=True, progress=False, out=tmp_path / "out", substitute_digits=True)["fig12"]
    assert json.loads((folder / "config.json").read_text())["dataset"] == "digits"
