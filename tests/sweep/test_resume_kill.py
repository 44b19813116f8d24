"""Interrupted sweeps: ``kill -9`` at several points, leftovers of killed writers, resume.

Every test ends the same way: the resumed folder's results.nc equals, variable
by variable and bit for bit, that of an uninterrupted run in another folder.
That assertion holds wherever a kill lands, so the tests do not depend on timing;
the polling only steers where the kills land.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import thermosgd
from thermosgd.cli import main
from thermosgd.config import load_toml
from thermosgd.sweep.run import LOCK_FILE, lock_holder, status
from thermosgd.sweep.store import stale_temporaries, temporary_path
from thermosgd.sweep.units import checksum_file, plan_units, unit_file, unit_state

# Six one-seed units of ~0.1–0.3 s each: long enough for kills to land inside a
# unit, short enough for the whole file to take seconds.
TOML = """
[model]
inputs = 3
hidden = 4
[train]
seeds = 6
steps = 1500
record_every = 100
[sweep]
seeds_per_unit = 1
"""
UNITS = 6


def assert_identical(a, b):
    assert sorted(a.variables) == sorted(b.variables)
    for name in a.variables:
        assert a[name].dtype == b[name].dtype, name
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    assert a.attrs == b.attrs


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """(config file, results of an uninterrupted run)."""
    base = tmp_path_factory.mktemp("reference")
    cfg = base / "cfg.toml"
    cfg.write_text(TOML)
    assert main(["sweep", str(cfg), "--out", str(base / "ref"), "--no-progress"]) == 0
    return cfg, thermosgd.load(base / "ref")


def _start(cfg, out, tmp_path):
    err = open(tmp_path / f"stderr-{out.name}-{time.monotonic_ns()}", "w")
    cmd = [sys.executable, "-m", "thermosgd", "sweep", str(cfg), "--out", str(out), "--no-progress"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)


def _finished_units(out) -> int:
    return len(list((out / "units").glob("unit-*.nc.sha256"))) if (out / "units").is_dir() else 0


def _wait_until(proc, condition, timeout=120.0) -> bool:
    """Poll until ``condition()``; False if the sweep ended first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            assert proc.returncode == 0, f"sweep failed with exit code {proc.returncode}"
            return False
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail("sweep subprocess made no progress")
        time.sleep(0.005)
    return True


def _lock_taken_by(out, pid) -> bool:
    try:
        return (out / LOCK_FILE).read_text().split() == [str(pid)]
    except OSError:
        return False


def _kill(proc) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _resume_and_compare(cfg, out, reference) -> None:
    # The killed process's lock file is still there, its flock gone with it.
    assert (out / LOCK_FILE).exists() and lock_holder(out) is None
    assert main(["sweep", str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert_identical(thermosgd.load(out), reference)
    st = status(out)
    assert (st.done, st.missing, st.corrupt, st.running) == (UNITS, 0, 0, None)
    assert stale_temporaries(out) == []


@pytest.mark.slow
def test_kill_before_first_unit_then_at_a_seeded_random_time(sweep, tmp_path):
    cfg, reference = sweep
    out = tmp_path / "r"
    first = _start(cfg, out, tmp_path)
    # config.json is written under the lock, just before the first unit starts.
    assert _wait_until(first, lambda: (out / "config.json").exists())
    _kill(first)
    assert first.returncode == -signal.SIGKILL
    assert _finished_units(out) < UNITS

    delay = np.random.default_rng(6).uniform(0.0, 1.0)
    second = _start(cfg, out, tmp_path)
    if _wait_until(second, lambda: _lock_taken_by(out, second.pid)):
        time.sleep(delay)
        _kill(second)
    _resume_and_compare(cfg, out, reference)


@pytest.mark.slow
def test_kill_twice_then_resume_keeps_finished_units(sweep, tmp_path, capsys):
    """Kill after one unit, resume in a new process, kill that one after more
    units, resume: units finished before a kill are never recomputed. While a
    sweep runs (here: stopped by SIGSTOP), a second one on the same folder is
    refused and writes nothing, and ``status`` names the running one."""
    cfg, reference = sweep
    out = tmp_path / "r"
    first = _start(cfg, out, tmp_path)
    assert _wait_until(first, lambda: _finished_units(out) >= 1)
    os.kill(first.pid, signal.SIGSTOP)  # frozen with the lock held, wherever it is, until killed

    before = (out / "config.json").stat()
    assert main(["sweep", str(cfg), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"another thermosgd process (pid {first.pid}) is writing to {out}" in err
    assert err.count("\n") == 1
    after = (out / "config.json").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert status(out).running == first.pid
    assert main(["status", str(out)]) == 0
    assert f"a sweep is running on it (pid {first.pid})" in capsys.readouterr().out

    _kill(first)
    assert first.returncode == -signal.SIGKILL
    units = plan_units(load_toml(cfg))
    kept = {u: unit_file(out, u).stat().st_ino for u in units if unit_state(out, u) == "done"}
    assert kept

    second = _start(cfg, out, tmp_path)
    if _wait_until(second, lambda: _finished_units(out) >= min(len(kept) + 2, UNITS - 1)):
        _kill(second)
    for u, ino in kept.items():  # done units were skipped, not rewritten
        assert unit_file(out, u).stat().st_ino == ino, u.name
    _resume_and_compare(cfg, out, reference)


def test_leftovers_of_a_killed_writer_are_ignored(sweep, tmp_path):
    """What ``kill -9`` can leave behind at any instant of a unit's write:
    a temporary data or checksum file, a data file without its checksum, or a
    new data file beside the checksum of its previous version."""
    cfg, reference = sweep
    out = tmp_path / "r"
    assert main(["sweep", str(cfg), "--out", str(out), "--no-progress"]) == 0
    units = plan_units(load_toml(cfg))
    good = unit_file(out, units[3]).read_bytes()

    unit_file(out, units[0]).unlink()
    checksum_file(out, units[0]).unlink()
    temporary_path(out / "units" / "unit-00000.nc", pid=999999).write_bytes(good[:100])  # half-written data
    temporary_path(out / "units" / "unit-00002.nc.sha256", pid=999999).write_text("0" * 64 + "\n")
    temporary_path(out / "results.nc", pid=999999).write_bytes(b"CDF\x02")
    checksum_file(out, units[1]).unlink()  # killed between the two renames
    sums = checksum_file(out, units[2]).read_text()
    unit_file(out, units[2]).write_bytes(good)  # new data, old checksum
    assert checksum_file(out, units[2]).read_text() == sums
    (out / "results.nc").unlink()

    st = status(out)
    assert (st.done, st.missing, st.corrupt) == (3, 1, 2)
    assert main(["sweep", str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert_identical(thermosgd.load(out), reference)
    assert stale_temporaries(out) == []
    assert status(out).done == UNITS


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return found


@pytest.mark.slow
def test_kill_with_forked_workers_frees_the_folder_at_once(tmp_path):
    """Worker processes forked from the sweep close their copy of the lock: after
    ``kill -9`` of the sweep the folder is free at once (not when the orphaned
    workers notice, up to a second later), and the resumed results equal a clean run."""
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(TOML.replace("steps = 1500", "steps = 3000").replace("seeds = 6", "seeds = 4"))
    out = tmp_path / "r"
    err = open(tmp_path / "stderr", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "thermosgd",
            "sweep",
            str(cfg),
            "--out",
            str(out),
            "--no-progress",
            "--executor",
            "processes",
            "--workers",
            "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=err,
    )
    if _wait_until(proc, lambda: _lock_taken_by(out, proc.pid) and len(_children(proc.pid)) >= 2):
        _kill(proc)
        assert lock_holder(out) is None  # at once, although the workers may still run
    assert main(["sweep", str(cfg), "--out", str(out), "--no-progress", "--executor", "inline"]) == 0
    assert main(["sweep", str(cfg), "--out", str(tmp_path / "clean"), "--no-progress", "--executor", "inline"]) == 0
    assert_identical(thermosgd.load(out), thermosgd.load(tmp_path / "clean"))
