"""Progress output: a bar on a terminal; in logs a plain line per work unit or nothing, never a carriage return."""

import io

from thermosgd.config import from_dict
from thermosgd.progress import bar, interactive
from thermosgd.sweep.run import run_sweep


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_no_terminal_lines_or_nothing():
    log = io.StringIO()
    with bar(3, desc="units", unit="unit", lines=True, stream=log) as b:
        b.update(1)
        b.update(2)
    lines = log.getvalue().splitlines()
    assert [ln.split(" (")[0] for ln in lines] == ["units: 1/3 unit", "units: 3/3 unit"]
    quiet = io.StringIO()
    with bar(100, desc="train", unit="step", stream=quiet) as b:
        b.update(100)
    assert quiet.getvalue() == "" and b.n == 100
    off = io.StringIO()
    with bar(3, lines=True, enabled=False, stream=off) as b:
        b.update(3)
    assert off.getvalue() == ""


def test_terminal_gets_a_live_bar():
    term = _Terminal()
    assert interactive(term) and not interactive(io.StringIO())
    with bar(10, desc="train", unit="step", stream=term) as b:
        b.update(10)
    assert "\r" in term.getvalue()  # tqdm redraws in place (and erases itself: leave=False)


def test_a_sweep_logs_one_line_per_unit(tmp_path, capsys):
    cfg = from_dict({"train": {"lr": [0.05, 0.1], "seeds": 4, "steps": 10}, "sweep": {"seeds_per_unit": 2}})
    run_sweep(cfg, tmp_path / "r", progress=True)
    err = capsys.readouterr().err  # pytest's capture is not a terminal, like a CI log
    assert "\r" not in err
    assert [ln.split(" (")[0] for ln in err.splitlines()] == ["units: 1/2 unit", "units: 2/2 unit"]
