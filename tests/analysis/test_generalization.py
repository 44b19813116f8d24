"""Generalization table: shape, values, correlations, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from thermosgd.analysis.generalization import final_values, generalization_summary
from thermosgd.cli import main
from thermosgd.errors import UsageError
from thermosgd.reproduce.experiments import run_generalization


def _dataset():
    """2 η × 2 |B| × 3 seeds × 2 steps; test accuracy falls as the activation rate rises."""
    L, K, S = 2, 2, 3
    cell = np.arange(L * K, dtype=float).reshape(L, K, 1, 1)  # 0..3
    seed = np.array([-1.0, 0.0, 1.0]).reshape(1, 1, S, 1) * 0.01
    shape = (L, K, S, 2)
    dims = ("lr", "batch_size", "seed", "step")
    return xr.Dataset(
        {
            "test_error": (dims, np.broadcast_to(0.1 + 0.05 * cell + seed, shape).copy()),
            "error": (dims, np.broadcast_to(0.05 + 0.0 * cell, shape).copy()),
            "activation_rate": (dims, np.broadcast_to(0.3 + 0.1 * cell, shape).copy()),
            "v_norm": (dims, np.broadcast_to(2.0 - 0.2 * cell, shape).copy()),
            "diverged": (dims[:3], np.zeros((L, K, S), bool)),
        },
        coords={"lr": [0.05, 0.1], "batch_size": [1, 4], "seed": [0, 1, 2], "step": [0, 100]},
    )


def test_table_values_and_correlations():
    s = generalization_summary(final_values(_dataset()))
    assert len(s["rows"]) == 4 and s["step"] == 100
    r = s["rows"][3]  # η = 0.1, |B| = 4: cell 3
    assert (r["lr"], r["batch_size"]) == (0.1, 4)
    np.testing.assert_allclose(r["test_accuracy"], 1 - 0.25)
    np.testing.assert_allclose(r["test_accuracy_se"], 0.01 / np.sqrt(3))
    np.testing.assert_allclose(r["activation_rate"], 0.6)
    c = s["correlations"]["cells"]
    assert c["test_accuracy~activation_rate"]["rho"] == pytest.approx(-1.0)
    assert c["test_accuracy~v_norm"]["rho"] == pytest.approx(1.0)
    assert s["correlations"]["replicas"]["test_accuracy~activation_rate"]["n"] == 12


def test_diverged_replicas_are_left_out():
    ds = _dataset()
    ds["diverged"][0, 0, 0] = True
    s = generalization_summary(final_values(ds))
    assert s["rows"][0]["seeds"] == 2


def test_missing_test_set_is_a_usage_error():
    with pytest.raises(UsageError):
        final_values(_dataset().drop_vars("test_error"))


def test_tiny_real_grid():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        p = run_generalization(None, quick=True, steps=100, seeds=2, test_size=200)
    finally:
        torch.set_num_threads(before)
    assert len(p["rows"]) == 4 and p["files"] == []
    for r in p["rows"]:
        assert 0 <= r["test_accuracy"] <= 1 and 0 <= r["activation_rate"] <= 1 and r["v_norm"] > 0


@pytest.mark.parametrize(
    "argv",
    [
        ["generalization", "--seeds", "1"],
        ["generalization", "--lr", "0.1", "--batch-size", "1", "2"],
        ["generalization", "--batch-size", "1", "1", "2"],
        ["generalization", "--test-size", "0"],
        ["generalization", "--lr", "nan", "0.1"],
    ],
)
def test_cli_bad_input_exits_2(argv):
    assert main(argv) == 2
