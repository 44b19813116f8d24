"""Sweeps on disk: units, checksums, resume, the lock, config mismatch."""

import numpy as np
import pytest

import thermosgd
from thermosgd.errors import UsageError
from thermosgd.sweep.config import from_dict
from thermosgd.sweep.run import folder_lock, run_sweep, status
from thermosgd.sweep.units import plan_units, unit_file


def _cfg(**train):
    t = {"lr": [0.05, 0.1], "seeds": 4, "steps": 30, "record_every": 10}
    t.update(train)
    return from_dict({"model": {"inputs": 3, "hidden": 4}, "train": t, "sweep": {"seeds_per_unit": 2}})


def test_sweep_writes_loadable_results(tmp_path):
    ds = run_sweep(_cfg(), tmp_path / "r", progress=False)
    loaded = thermosgd.load(tmp_path / "r")
    assert loaded["activation_rate"].dims == ("lr", "batch_size", "seed", "step")
    assert list(loaded.seed.values) == [0, 1, 2, 3]
    assert loaded.attrs["config"] == ds.attrs["config"]
    np.testing.assert_array_equal(loaded.v_norm.values, ds.v_norm.values)
    assert loaded.diverged.dtype == bool
    assert (tmp_path / "r" / "config.json").exists()
    assert status(tmp_path / "r").done == 2


def test_resume_recomputes_missing_and_corrupt_units_identically(tmp_path):
    cfg = _cfg()
    out = tmp_path / "r"
    full = run_sweep(cfg, out, progress=False)
    u0, u1 = plan_units(cfg)
    unit_file(out, u0).unlink()  # missing
    data = unit_file(out, u1).read_bytes()
    unit_file(out, u1).write_bytes(data[: len(data) // 2])  # truncated
    st = status(out)
    assert (st.missing, st.corrupt, st.done) == (1, 1, 0)
    again = run_sweep(cfg, out, progress=False)
    for name in full.data_vars:
        np.testing.assert_array_equal(full[name].values, again[name].values)
    assert status(out).done == 2


def test_different_config_is_refused(tmp_path):
    run_sweep(_cfg(), tmp_path / "r", progress=False)
    with pytest.raises(UsageError, match="different config.*lr"):
        run_sweep(_cfg(lr=[0.2]), tmp_path / "r", progress=False)


def test_second_writer_is_locked_out(tmp_path):
    out = tmp_path / "r"
    with folder_lock(out):
        with pytest.raises(UsageError, match="another thermosgd process"):
            run_sweep(_cfg(), out, progress=False)


def test_load_errors(tmp_path):
    with pytest.raises(UsageError, match="no results"):
        thermosgd.load(tmp_path)
    (tmp_path / "results.nc").write_bytes(b"garbage")
    with pytest.raises(UsageError, match="cannot read"):
        thermosgd.load(tmp_path)
