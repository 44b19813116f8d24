"""Runaway sizes are refused before any work starts, with the estimate and a setting that fits.

One check (``thermosgd.twolayer.budget.check``) serves ``sweep``, ``reproduce``,
``thermosgd.train`` and ``thermosgd.sweep``; every case must be refused within
seconds (each runs under a time limit) without writing anything.
"""

import re
import time

import pytest

import thermosgd
from thermosgd.cli import main
from thermosgd.config import from_dict
from thermosgd.errors import UsageError
from thermosgd.sweep.run import run_sweep
from thermosgd.twolayer import budget, engine
from thermosgd.twolayer.budget import Grid

QUICK = 10.0  # seconds: a refusal that takes longer is a failure too


def _toml(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize(
    "argv, words",
    [
        (lambda t: ["sweep", "/dev/zero", "--dry-run"], "not a regular file"),  # a device is never read
        (
            lambda t: ["sweep", _toml(t, "[train]\nseeds = 50000000\n"), "--dry-run"],
            "seeds = 50000000 is beyond the supported maximum",
        ),
        (
            lambda t: ["sweep", _toml(t, "[train]\nseeds = 5\nsteps = 1000000000\n"), "--dry-run"],
            "more than NetCDF-3 files hold (4 GiB); use record_every = ",
        ),
        (
            lambda t: ["sweep", _toml(t, "[train]\nseeds = 2\nsteps = 1000000000000\n"), "--dry-run"],
            "steps = 1000000000000 is beyond the supported maximum",
        ),
        (
            lambda t: ["sweep", _toml(t, "[train]\nseeds = 100000\nsteps = 5000\n"), "--out", str(t / "r")],
            "the sweep needs",
        ),
        (
            lambda t: [
                "sweep",
                _toml(t, "[train]\nseeds = 20000\nsteps = 1000000000\nrecord_every = 10000000\n"),
                "--out",
                str(t / "r"),
            ],
            "would run for about",
        ),
        (
            lambda t: ["reproduce", "fig3", "--seeds", "100000000", "--steps", "10", "--out", str(t / "r")],
            "100000000 is beyond the supported maximum",
        ),
        (
            lambda t: ["reproduce", "fig3", "--seeds", "2", "--steps", "1000000000000", "--out", str(t / "r")],
            "1000000000000 is beyond the supported maximum",
        ),
        (
            lambda t: ["reproduce", "fig3", "--seeds", "10000", "--steps", "1000000000", "--out", str(t / "r")],
            "would run for about",
        ),
        (
            lambda t: ["reproduce", "fig3", "--seeds", "1000000", "--steps", "100000", "--out", str(t / "r")],
            "more than NetCDF-3 files hold",
        ),
    ],
    ids=[
        "/dev/zero",
        "50M seeds dry run",
        "1e9 recorded steps",
        "1e12 steps",
        "memory",
        "sweep ETA",
        "reproduce 1e8 seeds",
        "reproduce 1e12 steps",
        "reproduce ETA",
        "results beyond NetCDF-3",
    ],
)
def test_runaway_sizes_are_one_line_exit_2(argv, words, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(budget, "available_memory", lambda: 8 * 10**9)  # the same answer on every machine
    start = time.monotonic()
    assert main(argv(tmp_path)) == 2
    assert time.monotonic() - start < QUICK
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "r").exists()  # nothing written


def test_eta_names_the_estimate_and_steps_that_fit(tmp_path, capsys):
    """A grid within the hard bounds (10^9 steps) that would still run for months."""
    toml = _toml(
        tmp_path, "[train]\nlr = [0.025, 0.05, 0.075, 0.1]\nseeds = 2000\nsteps = 1000000000\nrecord_every = 2000000\n"
    )
    assert main(["sweep", toml, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    hours = float(re.search(r"about ([\d,.]+) h", err).group(1).replace(",", ""))
    assert 720 < hours < 1e6  # above the 30-day limit
    steps = int(re.search(r"at most (\d+) steps", err).group(1))
    cfg = from_dict(
        {
            "train": {
                "lr": [0.025, 0.05, 0.075, 0.1],
                "seeds": 2000,
                "steps": steps,
                "record_every": max(1, steps // 500),
            }
        }
    )
    from thermosgd.sweep.run import plan_sweep

    assert plan_sweep(cfg, executor="auto").cost.seconds <= budget.MAX_SECONDS  # as the CLI plans it


def test_memory_refusal_suggests_settings_that_fit(monkeypatch):
    """With 3 GB available, a grid needing more is refused, and both suggested
    settings (fewer seeds, recording less often) pass the same check."""
    monkeypatch.setattr(budget, "available_memory", lambda: 3 * 10**9)
    cfg = from_dict({"train": {"lr": [0.05, 0.1], "seeds": 20000, "steps": 2000, "record_every": 1}})
    with pytest.raises(UsageError) as info:
        thermosgd.train(cfg)
    msg = str(info.value)
    assert msg.startswith("train() needs ") and "3 GB are available" in msg and "\n" not in msg
    seeds = int(re.search(r"at most (\d+) seeds", msg).group(1))
    every = int(re.search(r"record_every = (\d+)", msg).group(1))
    assert 100 < seeds < 20000 and every > 1
    budget.check_train(cfg, seeds)
    budget.check_train(cfg.replace(train={"record_every": every}), 20000)


def test_python_api_refuses_before_writing(tmp_path):
    huge = from_dict({"train": {"lr": [0.05, 0.1], "seeds": 1000000, "steps": 100000, "record_every": 1}})
    with pytest.raises(UsageError, match="needs .* of memory|NetCDF-3"):
        run_sweep(
            huge, tmp_path / "r", progress=False
        )  # not thermosgd.sweep: the sweep package shadows it once imported
    assert not (tmp_path / "r").exists()
    with pytest.raises(UsageError, match="train\\(\\) needs"):
        thermosgd.train(huge)
    slow = from_dict({"train": {"seeds": 20000, "steps": 10**9, "record_every": 10**7}})
    with pytest.raises(UsageError, match="would run for about"):
        thermosgd.train(slow)
    with pytest.raises(UsageError, match="steps"):
        thermosgd.config_from_dict({"train": {"steps": 10**20}})


def test_config_file_must_be_small_utf8(tmp_path):
    from thermosgd.config import load_toml

    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(UsageError, match="larger than 1 MiB"):
        load_toml(big)
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b"# caf\xe9\n[train]\nsteps = 5\n")
    with pytest.raises(UsageError, match="not UTF-8"):
        load_toml(latin)
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf[train]\nsteps = 5\n")
    assert load_toml(bom).train.steps == 5


def test_estimates_follow_the_grid():
    """The model is monotone where it must be, and the engine's cache block is its own."""
    g = Grid.of(from_dict({"train": {"lr": [0.05, 0.1], "seeds": 64, "steps": 1000}}))
    assert budget.call_seconds(g.with_(steps=2000), 8) > budget.call_seconds(g, 8)
    assert budget.call_seconds(g, 16) > budget.call_seconds(g, 8)
    assert budget.call_bytes(g.with_(probe=1024), 8) > budget.call_bytes(g, 8)
    assert budget.results_bytes(g.with_(record_every=10), 128) < budget.results_bytes(g, 128)
    assert budget.ENGINE_BLOCK_ENTRIES == engine._BLOCK_ENTRIES
    assert budget.N_METRICS >= 12 and budget._CHUNK == engine._CHUNK
