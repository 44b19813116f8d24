"""The compiled backend (the default, [train] fused = true) against the torch reference (fused = false).

The fused path consumes the same CPU-drawn samples in the same order, so the two
differ only by floating-point rounding (another summation order, and ‖W_i‖
recomputed instead of tracked): float64 runs must agree to 1e-9 relative, float32
runs to 1e-4 over a few hundred steps. Seeds are explicit in each config.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import thermosgd
from thermosgd.config import from_dict
from thermosgd.errors import UsageError
from thermosgd.twolayer import fused
from thermosgd.twolayer.params import Params


def _load(name):
    """A helper module beside this file (tests are not a package under --import-mode=importlib)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CACHE = _load("numba_cache")  # compiled-then-cached comparisons

pytest.importorskip("numba")


def _cfg(**train):
    base = {
        "lr": [0.05, 0.3],
        "batch_size": [1, 2, 5],
        "seeds": 3,
        "steps": 120,
        "record_every": 3,
        "probe_every": 30,
        "dtype": "float64",
        "seed": 7,
        "fused": False,  # the torch reference; each test turns the compiled path on
    }
    model = {"inputs": train.pop("M", 6), "hidden": 5, "bias": train.pop("bias", True)}
    data = {"probe_size": 32, "inputs": train.pop("inputs", "gaussian"), **train.pop("data", {})}
    return from_dict({"model": model, "data": data, "train": {**base, **train}})


def _close(a, b, rtol, atol) -> None:
    assert list(a.data_vars) == list(b.data_vars)
    # Records where a replica's parameters are already non-finite (it is flagged there and
    # frozen): what other instruments read from inf parameters is not defined alike, e.g. the
    # exact activation rate Φ(b/‖W‖) is ½ for ‖W‖ = inf but NaN from the reference's tracked
    # ‖W_i‖² (inf − inf). Those records must be non-finite norms on both paths.
    broken = ~(np.isfinite(a.v_norm.values) & np.isfinite(a.w_norm.values) & np.isfinite(a.bias_mean.values))
    np.testing.assert_array_equal(
        ~(np.isfinite(b.v_norm.values) & np.isfinite(b.w_norm.values) & np.isfinite(b.bias_mean.values)), broken
    )
    for name in a.data_vars:
        x, y = a[name].values, b[name].values
        if x.dtype.kind == "f":
            # Non-finite in the same places (an overflowing replica may read inf on one
            # path and NaN on the other).
            live = ~broken if x.shape == broken.shape else np.ones(x.shape, bool)
            np.testing.assert_array_equal(np.isfinite(y)[live], np.isfinite(x)[live], err_msg=name)
            ok = np.isfinite(x) & np.isfinite(y)
            np.testing.assert_allclose(y[ok], x[ok], rtol=rtol, atol=atol, err_msg=name)
        else:
            np.testing.assert_array_equal(y, x, err_msg=name)


@pytest.mark.parametrize(
    "train",
    [
        {},
        {"loss": "mse"},
        {"bias": False},
        {"share_data": False, "share_init": False},
        {"inputs": "uniform", "record_every": 7, "probe_every": 14},  # segments of 7 steps cross chunk ends
        {"steps": 300, "record_every": 300, "probe_every": 300},  # one long segment per chunk (256 steps)
        # A finite teacher task with a held-out set (test metrics through the reference instruments).
        {"data": {"labels": "teacher", "train_size": 40, "test_size": 24}, "lr": [0.5], "record_every": 5},
        # M ≥ fused.ROW_INPUTS: one replica at a time along W's rows, torch probe-set instruments.
        {"M": fused.ROW_INPUTS + 1},
        {"M": fused.ROW_INPUTS + 1, "loss": "mse", "bias": False, "share_data": False},
        {"M": fused.ROW_INPUTS + 1, "inputs": "uniform", "record_every": 7, "probe_every": 14},
        # |B| = 1 throughout: the row kernel's one-pass variant (update fused with the next forward).
        {"M": fused.ROW_INPUTS + 1, "batch_size": [1]},
        {"M": fused.ROW_INPUTS + 1, "batch_size": [1], "loss": "mse", "bias": False, "record_every": 1},
        {"M": fused.ROW_INPUTS + 1, "batch_size": [1], "steps": 300, "record_every": 300, "probe_every": 300},
    ],
)
def test_fused_equals_reference_float64(train):
    cfg = _cfg(**train)
    _close(thermosgd.train(cfg), thermosgd.train(cfg.replace(train={"fused": True})), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("noise", ["gd", "gaussian", "frozen"])
@pytest.mark.parametrize(
    "train",
    [
        {},
        # η = 0.3 (not 0.2) lets one replica's ‖V‖ grow 100-fold under mse here, which amplifies the
        # two paths' different summation orders past 1e-9 (4e-9 measured, with either kernel).
        {"loss": "mse", "bias": False, "share_data": False, "svag": 3, "lr": [0.05, 0.2]},
        {"gd_batch": 512, "svag": 2},  # chunks of 2^18 / (512·6) = 85 updates: 120 updates cross one
        {"M": fused.ROW_INPUTS + 1, "record_every": 7, "probe_every": 14},
        {"M": fused.ROW_INPUTS + 1, "bias": False, "svag": 2},
    ],
)
def test_fused_controls_equal_reference_float64(noise, train):
    """The G-sample noise models on the compiled kernels, lanes and rows, with and without SVAG."""
    cfg = _cfg(noise=noise, steps=60, **{"gd_batch": 16, **train})
    _close(thermosgd.train(cfg), thermosgd.train(cfg.replace(train={"fused": True})), rtol=1e-9, atol=1e-12)


def test_fused_equals_reference_float32_fig3_grid():
    cfg = thermosgd.config_from_dict(
        {
            "train": {
                "lr": [0.025, 0.05, 0.075, 0.1],
                "seeds": 5,
                "steps": 400,
                "record_every": 6,
                "probe_every": 60,
                "seed": 1,
                "fused": False,
            }
        }
    )
    _close(thermosgd.train(cfg), thermosgd.train(cfg.replace(train={"fused": True})), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "M, batch_size", [(6, [1, 2, 5]), (fused.ROW_INPUTS + 1, [1, 2, 5]), (fused.ROW_INPUTS + 1, [1])]
)
def test_diverging_replicas_are_frozen_alike(M, batch_size):
    cfg = _cfg(lr=[0.05, 200.0], loss="mse", steps=60, M=M, batch_size=batch_size)
    ref, fus = thermosgd.train(cfg), thermosgd.train(cfg.replace(train={"fused": True}))
    assert ref.diverged.values.any() and not ref.diverged.values.all()
    _close(ref, fus, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("M", [6, fused.ROW_INPUTS + 1])
def test_a_replica_does_not_depend_on_its_companions(M):
    cfg = _cfg(steps=60, seeds=[0, 1, 2, 3, 4, 5, 6], M=M).replace(train={"fused": True})
    alone = thermosgd.train(cfg, seeds=[4])
    together = thermosgd.train(cfg).sel(seed=[4])
    _close(alone, together, rtol=1e-12, atol=0)


@pytest.mark.parametrize("noise", ["gd", "gaussian", "frozen"])
@pytest.mark.parametrize("share_data", [True, False])
def test_a_control_replica_is_the_same_bits_alone_or_in_a_grid(noise, share_data):
    """The G-sample kernel steps the replicas of one stream as one matrix product: a replica's
    numbers must still not depend on which other seeds run with it (layouts, executors)."""
    cfg = _cfg(noise=noise, gd_batch=300, steps=40, seeds=[0, 1, 2, 3, 4], share_data=share_data)
    cfg = cfg.replace(train={"fused": True})
    alone = thermosgd.train(cfg, seeds=[3])
    together = thermosgd.train(cfg).sel(seed=[3])
    _close(alone, together, rtol=0, atol=0)


@pytest.mark.parametrize("noise", ["gd", "frozen"])
def test_the_control_kernel_widens_float32_draws_exactly(noise):
    """float64 runs hand the G-sample kernel their float32 draws as drawn (no pass widening the
    chunk on the drawing thread): the kernel widens them tile by tile, to the same bits as
    steps on the widened chunk ("frozen" with its noise, added in the kernel)."""
    rng = np.random.default_rng(5)
    R, N, M, G, S, C = 6, 5, 7, 300, 3, 4  # G is not a multiple of the tile: a short last tile
    xs = rng.standard_normal((S, C, G, M)).astype(np.float32)
    ys = rng.integers(0, 2, (S, C, G)).astype(np.float32)
    stream = np.arange(R) % S
    ends = {}
    for x, y in ((xs, ys), (xs.astype(np.float64), ys.astype(np.float64))):
        f64 = torch.float64  # the same start for both: the parameters move in place
        W = torch.linspace(-1, 1, R * N * M, dtype=f64).view(R, N, M)
        p = Params(W, torch.full((R, N), 0.1, dtype=f64), torch.linspace(-1, 1, R * N, dtype=f64).view(R, N))
        ens = fused.ensemble(p, torch.full((R, G), 0.3 / G, dtype=torch.float64), stream, many_samples=True)
        P = N * M + 2 * N
        z = (np.linspace(-2, 2, C * S * P).reshape(C, S, P), np.full((R, P), 0.01)) if noise == "frozen" else None
        ens.steps(x, y, 0, C, loss="bce", bias=True, threads=1, noise=z)
        ends[x.dtype.name] = [t.clone() for t in (p.W, p.b, p.V)]
    for a, b in zip(ends["float32"], ends["float64"]):
        assert torch.equal(a, b)


def test_the_vectorized_sigmoid_equals_the_exact_one():
    """``_kernels.residuals`` (its own exp) against σ(f) − y from numpy's exp, in both dtypes."""
    k = fused._kernels()
    rng = np.random.default_rng(3)
    for dt, tol in ((np.float64, 4e-16), (np.float32, 2e-7)):
        f = np.concatenate([rng.standard_normal(997) * 40, [np.nan, np.inf, -np.inf, 750.0, -750.0, 0.0]]).astype(dt)
        y, w = rng.integers(0, 2, f.size).astype(dt), rng.uniform(0.1, 2, f.size).astype(dt)
        out = f.copy()
        k.residuals(out, y, w, False)
        with np.errstate(over="ignore"):
            exact = (1.0 / (1.0 + np.exp(-f.astype(np.float64))) - y) * w
        assert np.isnan(out[-6]) and np.isnan(exact[-6])
        ok = np.isfinite(exact)
        np.testing.assert_allclose(out[ok], exact[ok], rtol=0, atol=tol * w.max())
        mse = f.copy()
        k.residuals(mse, y, w, True)
        np.testing.assert_array_equal(mse, (f - y) * w)


def test_compiled_kernels_are_the_default_where_they_apply():
    assert thermosgd.config_from_dict({}).train.fused is True
    assert fused.applies(_cfg(fused=True))
    assert not fused.applies(_cfg(fused=False))
    assert fused.applies(_cfg(fused=True, noise="gaussian"))
    assert not fused.applies(_cfg(fused=True, device="cuda"))


def test_a_numba_that_fails_to_import_falls_back_to_torch_and_says_so_once(monkeypatch, capsys):
    import sys

    cfg = _cfg(fused=True, steps=12, record_every=4, probe_every=4)
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba raises ImportError
    monkeypatch.setattr(fused, "_said_fallback", False)
    assert not fused.available()
    runs = [thermosgd.train(cfg), thermosgd.train(cfg)]
    err = capsys.readouterr().err
    assert err.count("numba could not be imported") == 1 and err.count("\n") == 1
    reference = thermosgd.train(cfg.replace(train={"fused": False}))
    for ds in runs:  # the torch path itself, bit for bit
        _close(reference, ds, rtol=0, atol=0)
    with pytest.raises(UsageError, match="need numba"):
        fused.require()


def test_numba_caches_outside_the_source_tree():
    import numba

    fused._kernels()
    where = Path(numba.config.CACHE_DIR).resolve()
    src = Path(fused.__file__).resolve().parents[1]
    assert src not in where.parents and where != src
    assert not list(src.rglob("_kernels*.nbi")) and not list(src.rglob("_kernels*.nbc"))


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert fused.cache_dir() == tmp_path / "thermosgd" / "numba"
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    assert fused.cache_dir() == tmp_path / "mine"


@pytest.mark.parametrize("M", [6, fused.ROW_INPUTS + 1])
@pytest.mark.parametrize("batch_size", [[1], [1, 2]])
def test_the_thread_count_changes_no_bit(M, batch_size, monkeypatch):
    """Blocks of replicas are split over threads; replicas never mix, so 1 and 3 threads agree exactly."""
    _same_bits_on_1_and_3_threads(
        _cfg(steps=40, seeds=list(range(12)), M=M, fused=True, batch_size=batch_size), monkeypatch
    )


def _same_bits_on_1_and_3_threads(cfg, monkeypatch) -> None:
    monkeypatch.setattr(fused, "_MIN_PARALLEL_WORK", 1)  # split even these small calls
    monkeypatch.setattr(fused, "_MIN_ITEM_WORK", 1)  # one group per queue item
    monkeypatch.setattr(fused, "_MIN_QUEUE_WORK", 1)
    runs = []
    for threads in (1, 3):
        monkeypatch.setattr("torch.get_num_threads", lambda: threads)
        runs.append(thermosgd.train(cfg))
    _close(runs[0], runs[1], rtol=0, atol=0)


@pytest.mark.parametrize("noise", ["gd", "gaussian", "frozen"])
def test_the_control_kernels_workers_change_no_bit(noise, monkeypatch):
    """The G-sample kernel's groups are taken from a queue by ``threads`` workers and a spare one:
    1 and 3 threads (2 and 4 workers) agree exactly."""
    _same_bits_on_1_and_3_threads(
        _cfg(noise=noise, gd_batch=200, steps=20, seeds=list(range(12)), fused=True), monkeypatch
    )


def test_the_control_kernels_tiles_do_not_depend_on_the_split(monkeypatch):
    """Groups of unequal sizes (3, 1, 2 replicas of a 20×20 net): the tile length, which the
    largest group bounds, is the same whether one call steps every group or each its own."""
    rng = np.random.default_rng(8)
    R, N, M, G, C = 6, 20, 20, 300, 3
    stream = np.array([0, 0, 0, 1, 2, 2])
    xs = rng.standard_normal((3, C, G, M)).astype(np.float32)
    ys = rng.integers(0, 2, (3, C, G)).astype(np.float32)
    monkeypatch.setattr(fused, "_MIN_PARALLEL_WORK", 1)
    monkeypatch.setattr(fused, "_MIN_ITEM_WORK", 1)  # each group its own call
    monkeypatch.setattr(fused, "_MIN_QUEUE_WORK", 1)
    ends = []
    for threads in (1, 3):
        p = Params(
            torch.linspace(-0.5, 0.5, R * N * M, dtype=torch.float64).view(R, N, M),
            torch.full((R, N), 0.1, dtype=torch.float64),
            torch.linspace(-1, 1, R * N, dtype=torch.float64).view(R, N),
        )
        ens = fused.ensemble(p, torch.full((R, G), 0.3 / G, dtype=torch.float64), stream, many_samples=True)
        assert fused._kernels().sample_tile(ens.starts, N, M, G) < fused._kernels().TILE  # bounded by the group of 3
        ens.steps(xs, ys, 0, C, loss="bce", bias=True, threads=threads)
        ends.append([t.clone() for t in (p.W, p.b, p.V)])
    fused.release_threads()  # called outside train(): end the kernels' threads as train() does
    for a, b in zip(*ends):
        assert torch.equal(a, b)


def test_the_spare_worker_runs_at_the_lowest_priority():
    """The queue's spare worker takes items at nice 19 (Linux), so it never runs ahead of the
    engine's drawing thread; every item runs once."""
    import os
    import sys
    import threading
    import time

    seen: dict[int, int] = {}

    def item(i0, i1):
        seen[i0] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        time.sleep(0.005)  # releases the GIL: lets the spare take items (no time is measured)

    fused._queue(item, 40, 1, 40 * max(fused._MIN_ITEM_WORK, fused._MIN_QUEUE_WORK), spare=1)  # a block per item
    fused.release_threads()
    assert sorted(seen) == list(range(40))
    base = os.getpriority(os.PRIO_PROCESS, 0)
    if sys.platform.startswith("linux"):
        assert set(seen.values()) == {base, 19}, seen
    else:
        assert set(seen.values()) == {base}


@pytest.mark.parametrize("noise", ["sgd", "gd"])
def test_no_kernel_thread_outlives_a_training_call(noise, monkeypatch):
    """A process that forks after training (reproduce's side process) must have no other thread."""
    import threading

    monkeypatch.setattr(fused, "_MIN_PARALLEL_WORK", 1)
    monkeypatch.setattr("torch.get_num_threads", lambda: 3)
    thermosgd.train(_cfg(fused=True, steps=12, seeds=list(range(12)), noise=noise, gd_batch=100))
    ours = [t for t in threading.enumerate() if t.name.startswith("thermosgd-")]  # other tests' threads may live on
    assert not ours, ours


@pytest.mark.parametrize("M", [4, fused.ROW_INPUTS + 3])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_compiled_probe_set_instruments_equal_the_reference(M, dtype, monkeypatch):
    """Both probe kernels (per lane; per row with torch's products) against
    :func:`measure.probe_metrics` on the same parameters, split over threads
    (float64 to 1e-10; float32, whose sums run in another order, to 1e-4)."""
    import torch

    from thermosgd.twolayer.measure import probe_metrics
    from thermosgd.twolayer.params import Params

    monkeypatch.setattr(fused, "_MIN_PARALLEL_WORK", 1)  # split even this small call
    dt = getattr(torch, dtype)
    g = torch.Generator().manual_seed(3)
    S, L, N, P = 5, 3, 7, 50
    R = S * L
    p = Params(*(torch.randn(*shape, generator=g, dtype=torch.float64).to(dt) for shape in ((R, N, M), (R, N), (R, N))))
    px = torch.randn(S, P, M, generator=g, dtype=torch.float64).to(dt)
    py = torch.randint(0, 2, (S, P), generator=g).to(dt)
    bsz = torch.tensor([1.0, 2.0, 3.0], dtype=dt).repeat_interleave(S)
    ens = fused.ensemble(p, torch.zeros(R, 1, dtype=dt), np.arange(R) % S)
    tol = {"rtol": 1e-10, "atol": 1e-13} if dtype == "float64" else {"rtol": 1e-4, "atol": 1e-6}
    for loss in ("bce", "mse"):
        for bias in (True, False):
            for grads in (True, False):
                got = ens.probe(px, py, bsz, loss=loss, bias=bias, grads=grads, threads=3)
                ref = probe_metrics(
                    p,
                    px.repeat(L, 1, 1),
                    py.repeat(L, 1),
                    bsz,
                    loss=loss,
                    bias=bias,
                    need_grads=grads,
                    exact_rate=False,
                )
                assert set(got) == set(ref)
                for k in ref:
                    np.testing.assert_allclose(got[k].numpy(), ref[k].numpy(), err_msg=k, **tol)
    fused.release_threads()  # called outside train(): end the kernels' threads as train() does


def test_probe_instruments_in_groups_of_blocks_are_the_same_bits(monkeypatch):
    """Grids whose lane-layout probe set would exceed _PROBE_LAYOUT_BYTES are done in groups of blocks."""
    cfg = _cfg(seeds=list(range(30)), steps=20, record_every=10, probe_every=10, fused=True)
    whole = thermosgd.train(cfg)
    monkeypatch.setattr(fused, "_PROBE_LAYOUT_BYTES", 1)  # one block of 64 lanes per group
    grouped = thermosgd.train(cfg)
    _close(whole, grouped, rtol=0, atol=0)


def test_cli_fused_flags_are_recorded_and_a_missing_numba_is_refused_when_asked_for(tmp_path, capsys, monkeypatch):
    import json

    from thermosgd.cli import main

    grid = tmp_path / "grid.toml"
    grid.write_text("[train]\nsteps = 12\nseeds = 2\nrecord_every = 4\n")

    def recorded(folder):
        return json.loads((tmp_path / folder / "config.json").read_text())["train"]["fused"]

    assert main(["sweep", str(grid), "--out", str(tmp_path / "d"), "--no-progress"]) == 0
    assert main(["sweep", str(grid), "--out", str(tmp_path / "r"), "--no-fused", "--no-progress"]) == 0
    assert main(["reproduce", "fig3", "--quick", "--out", str(tmp_path / "f3"), "--no-progress"]) == 0
    assert (recorded("d"), recorded("r"), recorded("f3")) == (True, False, True)
    capsys.readouterr()
    monkeypatch.setattr(fused, "available", lambda: False)
    assert main(["reproduce", "fig3", "--quick", "--fused", "--out", str(tmp_path / "n"), "--no-progress"]) == 2
    assert "need numba" in capsys.readouterr().err and not (tmp_path / "n").exists()


_FRESH_OR_CACHED = r"""
import sys
import numpy as np
from thermosgd.twolayer import fused
k = fused._kernels()
rng = np.random.default_rng(0)
R, N, M, G, S, n = 8, 10, 10, 300, 2, 5
W = rng.standard_normal((R, N, M)) / 3; b = np.zeros((R, N)); V = rng.standard_normal((R, N)) / 3
xs = rng.standard_normal((S, n, G, M)).astype(np.float32); ys = (rng.random((S, n, G)) < 0.5).astype(np.float32)
wl = np.full((R, G), 0.5 / G)
order = np.argsort(np.arange(R) % S, kind="stable"); starts = np.array([0, R // 2, R]); gstream = np.array([0, 1])
T = k.sample_tile(starts, N, M, G)
k.sample_steps(W, b, V, xs, ys, wl, order, starts, gstream, 0, n, False, True, 0, S, np.empty((0, 0, 0)), W[:0, 0], T)
np.save(sys.argv[1], np.concatenate([W.ravel(), b.ravel(), V.ravel()]))
"""


def test_the_control_kernel_compiled_here_equals_the_one_loaded_from_numbas_cache(tmp_path):
    """The first process compiles the G-sample kernel, the second loads it from numba's disk cache:
    the same bits (with fastmath's reassoc they differed by 1e-17 on an AVX-512 machine)."""
    CACHE.compiled_then_cached(tmp_path, _FRESH_OR_CACHED)


_SGD_FRESH_OR_CACHED = r"""
import sys
import numpy as np
import thermosgd
from thermosgd.config import from_dict
out = []
small, big = {"inputs": 10, "hidden": 10}, {"inputs": 40, "hidden": 30}
for model, batch in ((small, [1]), (big, [1]), (big, [3])):
    cfg = from_dict({"model": model, "data": {"probe_size": 16}, "train": {"seeds": 2, "steps": 60, "record_every": 10,
                     "dtype": "float64", "batch_size": batch}})
    ds = thermosgd.train(cfg)
    out += [ds[v].values.ravel() for v in sorted(ds.data_vars)]
np.save(sys.argv[1], np.concatenate(out))
"""


def test_the_sgd_kernels_compiled_here_equal_the_ones_loaded_from_numbas_cache(tmp_path):
    """The lane kernel (10×10) and both row kernels (40×30, |B| = 1 and 3), compiled in one process and
    loaded from numba's cache in the next: the same bits."""
    CACHE.compiled_then_cached(tmp_path, _SGD_FRESH_OR_CACHED)
