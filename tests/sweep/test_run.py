"""Sweeps on disk: units, checksums, resume, the lock, config mismatch."""

import numpy as np
import pytest

import thermosgd
from thermosgd.cli import main
from thermosgd.config import from_dict, load_toml
from thermosgd.errors import UsageError
from thermosgd.sweep.run import folder_lock, run_sweep, status
from thermosgd.sweep.units import checksum_file, plan_units, unit_file


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


def test_failing_unit_is_one_line_and_finished_units_stay(tmp_path, monkeypatch, capsys):
    from thermosgd.sweep import run

    cfg, out = _cfg(), tmp_path / "r"
    real = run.compute_unit

    def flaky(cfg_dict, seeds, progress=False):
        if 2 in seeds:
            raise RuntimeError("out of memory\nsecond line of detail")
        return real(cfg_dict, seeds, progress)

    monkeypatch.setattr(run, "compute_unit", flaky)
    with pytest.raises(UsageError) as info:
        run_sweep(cfg, out, progress=False)
    msg = str(info.value)
    assert "unit-00001 (seeds 2–3) failed: RuntimeError: out of memory" in msg and "\n" not in msg
    st = status(out)
    assert (st.done, st.missing, st.running) == (1, 1, None)
    assert not (out / "results.nc").exists()

    monkeypatch.setattr(run, "compute_unit", real)
    again = run_sweep(cfg, out, progress=False)
    clean = run_sweep(cfg, tmp_path / "clean", progress=False)
    for name in clean.variables:
        np.testing.assert_array_equal(again[name].values, clean[name].values)


def test_diverging_replica_is_recorded_and_the_rest_kept(tmp_path, capsys):
    cfg = from_dict(
        {
            "model": {"inputs": 3, "hidden": 4},
            "train": {"loss": "mse", "lr": [0.05, 50.0], "seeds": 4, "steps": 40, "record_every": 10},
            "sweep": {"seeds_per_unit": 2},
        }
    )
    ds = run_sweep(cfg, tmp_path / "r", progress=False)
    assert ds.diverged.dtype == bool
    assert ds.diverged.sel(lr=50.0).all() and not ds.diverged.sel(lr=0.05).any()
    assert (ds.diverged_step.sel(lr=50.0) > 0).all() and (ds.diverged_step.sel(lr=0.05) == -1).all()
    assert np.isfinite(ds.v_norm.sel(lr=0.05).values).all()
    assert np.isnan(ds.v_norm.sel(lr=50.0).isel(step=-1).values).all()
    st = status(tmp_path / "r")
    assert (st.done, st.diverged, st.replicas) == (2, 4, 8)
    assert main(["status", str(tmp_path / "r")]) == 0
    assert "4 of 8 replicas in finished units diverged" in capsys.readouterr().out


def test_unit_of_another_config_is_not_read(tmp_path):
    """A unit file with a valid checksum but another sweep's numbers (copied in
    by hand) is recomputed, not merged."""
    import shutil

    a, b = tmp_path / "a", tmp_path / "b"
    run_sweep(_cfg(), a, progress=False)
    run_sweep(_cfg(steps=20), b, progress=False)
    u0 = plan_units(_cfg())[0]
    for f in (unit_file(a, u0), checksum_file(a, u0)):
        shutil.copy(checksum_file(b, u0) if f.name.endswith(".sha256") else unit_file(b, u0), f)
    assert status(a).corrupt == 1
    again = run_sweep(_cfg(), a, progress=False)
    clean = run_sweep(_cfg(), tmp_path / "clean", progress=False)
    np.testing.assert_array_equal(again.v_norm.values, clean.v_norm.values)


def test_dry_run_and_status_commands(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[model]\ninputs = 3\nhidden = 4\n[train]\nseeds = 5\nsteps = 20\n[sweep]\nseeds_per_unit = 2\n")
    out = tmp_path / "r"
    assert main(["sweep", str(cfg), "--dry-run", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "units       3 (2 seeds per unit;" in text and "replicas    5" in text and "estimate    ~" in text
    assert not out.exists()  # a dry run writes nothing

    assert main(["sweep", str(cfg), "--out", str(out), "--no-progress"]) == 0
    unit_file(out, plan_units(load_toml(cfg))[2]).unlink()
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    assert "2/3 units done, 1 missing, 0 corrupt" in capsys.readouterr().out
    assert main(["sweep", str(cfg), "--dry-run", "--out", str(out)]) == 0
    assert f"2 of 3 units already in {out}" in capsys.readouterr().out

    cfg.write_text("[model]\ninputs = 3\nhidden = 4\n[train]\nseeds = 5\nsteps = 30\n[sweep]\nseeds_per_unit = 2\n")
    for argv in (["sweep", str(cfg), "--dry-run", "--out", str(out)], ["sweep", str(cfg), "--out", str(out)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "holds results of a different config ([train] steps: 20 there, 30 now)" in err
        assert err.count("\n") == 1

    assert main(["status", str(tmp_path)]) == 2
    assert "not a sweep folder" in capsys.readouterr().err
    (out / "config.json").write_text("{not json")
    assert main(["status", str(out)]) == 2
    assert "unreadable" in capsys.readouterr().err
