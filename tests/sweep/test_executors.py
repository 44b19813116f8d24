"""Executors: worker processes and Dask give the in-process results, bit for bit."""

import socket

import numpy as np
import pytest

import thermosgd
from thermosgd.cli import main
from thermosgd.config import from_dict, load_toml
from thermosgd.errors import UsageError
from thermosgd.sweep import executors
from thermosgd.sweep.executors import open_executor, resolve_kind
from thermosgd.sweep.run import run_sweep

RAW = {
    "model": {"inputs": 3, "hidden": 4},
    "data": {"train_size": 40, "labels": "teacher", "test_size": 20},
    "train": {"lr": [0.05, 0.2], "batch_size": [1, 3], "seeds": 5, "steps": 60, "record_every": 20},
    "sweep": {"seeds_per_unit": 2},
}


def assert_identical(a, b):
    assert sorted(a.variables) == sorted(b.variables)
    for name in a.variables:
        assert a[name].dtype == b[name].dtype, name
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    assert a.attrs == b.attrs


@pytest.fixture(scope="module")
def inline(tmp_path_factory):
    out = tmp_path_factory.mktemp("inline")
    returned = run_sweep(from_dict(RAW), out, progress=False)
    loaded = thermosgd.load(out)
    assert_identical(returned, loaded)  # what run_sweep returns is what is on disk
    return loaded


def test_worker_processes_match_inline(inline, tmp_path):
    run_sweep(from_dict(RAW), tmp_path, executor="processes", workers=2, progress=False)
    assert_identical(thermosgd.load(tmp_path), inline)


@pytest.mark.slow
def test_local_dask_cluster_matches_inline(tmp_path):
    toml = (
        "[model]\ninputs = 3\nhidden = 4\n"
        '[data]\ntrain_size = 40\nlabels = "teacher"\n'
        "[train]\nlr = 0.1\nseeds = 5\nsteps = 60\nrecord_every = 20\n"
        "[sweep]\nseeds_per_unit = 2\n"
    )  # one lr and batch size: no figures to draw, the test times the cluster only
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    run_sweep(load_toml(cfg), tmp_path / "inline", progress=False)
    # --workers without --executor means a local Dask cluster of worker processes.
    assert main(["sweep", str(cfg), "--out", str(tmp_path / "dask"), "--workers", "2", "--no-progress"]) == 0
    assert_identical(thermosgd.load(tmp_path / "dask"), thermosgd.load(tmp_path / "inline"))


def test_running_scheduler_matches_inline(inline, tmp_path):
    from distributed import LocalCluster

    # An in-process cluster starts in a second; what matters here is the
    # connection by address, which a remote scheduler would use the same way.
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        run_sweep(from_dict(RAW), tmp_path, scheduler=cluster.scheduler_address, progress=False)
    assert_identical(thermosgd.load(tmp_path), inline)


def test_scheduler_without_workers_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    from distributed import LocalCluster

    monkeypatch.setattr(executors, "WORKER_TIMEOUT", 1)
    cfg = tmp_path / "c.toml"
    cfg.write_text("[train]\nsteps = 5\n")
    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster:
        code = main(["sweep", str(cfg), "--out", str(tmp_path / "r"), "--scheduler", cluster.scheduler_address])
    assert code == 2
    err = capsys.readouterr().err
    assert "has no workers" in err and err.count("\n") == 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:{port}", "not-an-address"])
def test_unreachable_scheduler_is_one_line_exit_2(address, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(executors, "CONNECT_TIMEOUT", "1s")
    cfg = tmp_path / "c.toml"
    cfg.write_text("[train]\nsteps = 5\n")
    address = address.format(port=_closed_port())
    assert main(["sweep", str(cfg), "--out", str(tmp_path / "r"), "--scheduler", address]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot reach Dask scheduler {address}")
    assert err.count("\n") == 1
    assert not (tmp_path / "r" / "units").exists()


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"kind": "threads"}, "allowed: auto, inline, processes, dask"),
        ({"workers": 0}, "workers must be at least 1"),
        ({"kind": "processes", "scheduler": "tcp://h:1"}, "cannot be combined"),
        ({"workers": 2, "scheduler": "tcp://h:1"}, "with a scheduler"),
    ],
)
def test_bad_executor_arguments(kwargs, words):
    with pytest.raises(UsageError) as info:
        resolve_kind(**kwargs)
    assert words in str(info.value)
    with pytest.raises(UsageError):
        with open_executor(**kwargs):
            pass  # pragma: no cover


def test_inline_executor_delivers_errors_through_the_future():
    with open_executor() as ex:
        fut = ex.submit(int, "x")
    assert isinstance(fut.exception(), ValueError)
    assert ex.submit(pow, 2, 5).result() == 32
