"""The fused CPU step ([train] fused = true) against the reference engine, over whole runs.

The fused path consumes the same CPU-drawn samples in the same order, so the two
differ only by floating-point rounding (another summation order, and ‖W_i‖
recomputed instead of tracked): float64 runs must agree to 1e-9 relative, float32
runs to 1e-4 over a few hundred steps. Seeds are explicit in each config.
"""

from __future__ import annotations

import numpy as np
import pytest

import thermosgd
from thermosgd.config import from_dict
from thermosgd.errors import UsageError
from thermosgd.twolayer import fused

pytest.importorskip("numba")


def _cfg(**train):
    base = {"lr": [0.05, 0.3], "batch_size": [1, 2, 5], "seeds": 3, "steps": 120, "record_every": 3,
            "probe_every": 30, "dtype": "float64", "seed": 7}
    model = {"inputs": 6, "hidden": 5, "bias": train.pop("bias", True)}
    data = {"probe_size": 32, "inputs": train.pop("inputs", "gaussian")}
    return from_dict({"model": model, "data": data, "train": {**base, **train}})


def _close(a, b, rtol, atol) -> None:
    assert list(a.data_vars) == list(b.data_vars)
    for name in a.data_vars:
        x, y = a[name].values, b[name].values
        if x.dtype.kind == "f":
            # Non-finite in the same places (an overflowing replica may read inf on one
            # path and NaN on the other: inf − inf in the reference's tracked ‖W_i‖²).
            np.testing.assert_array_equal(np.isfinite(y), np.isfinite(x), err_msg=name)
            ok = np.isfinite(x)
            np.testing.assert_allclose(y[ok], x[ok], rtol=rtol, atol=atol, err_msg=name)
        else:
            np.testing.assert_array_equal(y, x, err_msg=name)


@pytest.mark.parametrize("train", [
    {},
    {"loss": "mse"},
    {"bias": False},
    {"share_data": False, "share_init": False},
    {"inputs": "uniform", "record_every": 7, "probe_every": 14},  # segments of 7 steps cross chunk ends
    {"steps": 300, "record_every": 300, "probe_every": 300},  # one long segment per chunk (256 steps)
])
def test_fused_equals_reference_float64(train):
    cfg = _cfg(**train)
    _close(thermosgd.train(cfg), thermosgd.train(cfg.replace(train={"fused": True})), rtol=1e-9, atol=1e-12)


def test_fused_equals_reference_float32_fig3_grid():
    cfg = thermosgd.config_from_dict({"train": {"lr": [0.025, 0.05, 0.075, 0.1], "seeds": 5, "steps": 400,
                                                "record_every": 6, "probe_every": 60, "seed": 1}})
    _close(thermosgd.train(cfg), thermosgd.train(cfg.replace(train={"fused": True})), rtol=1e-4, atol=1e-6)


def test_diverging_replicas_are_frozen_alike():
    cfg = _cfg(lr=[0.05, 200.0], loss="mse", steps=60)
    ref, fus = thermosgd.train(cfg), thermosgd.train(cfg.replace(train={"fused": True}))
    assert ref.diverged.values.any() and not ref.diverged.values.all()
    _close(ref, fus, rtol=1e-9, atol=1e-12)


def test_a_replica_does_not_depend_on_its_companions():
    cfg = _cfg(steps=60, seeds=[0, 1, 2, 3, 4, 5, 6]).replace(train={"fused": True})
    alone = thermosgd.train(cfg, seeds=[4])
    together = thermosgd.train(cfg).sel(seed=[4])
    _close(alone, together, rtol=1e-12, atol=0)


def test_fused_is_refused_where_it_does_not_apply(monkeypatch):
    with pytest.raises(UsageError, match='fused = true runs noise = "sgd" on device = "cpu" only'):
        _cfg(fused=True, noise="gd")
    with pytest.raises(UsageError, match="fused = true runs"):
        _cfg(fused=True, device="cuda")
    monkeypatch.setattr(fused, "available", lambda: False)
    with pytest.raises(UsageError, match="needs numba"):
        thermosgd.train(_cfg(fused=True, steps=3))
