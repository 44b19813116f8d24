"""Equal-training-error comparison: first crossing, paired summary, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr

from thermosgd.analysis.equal_error import at_first_crossing, equal_error_summary, first_crossing
from thermosgd.cli import main


def test_first_crossing_hand_made():
    v = np.array(
        [
            [0.5, 0.3, 0.1, 0.2, 0.05],  # reaches exactly at the target: index 2
            [0.5, 0.4, 0.3, 0.3, 0.3],  # never
            [np.nan, 0.09, 0.5, 0.0, 0.0],  # NaN never counts; first hit at 1
        ]
    )
    np.testing.assert_array_equal(first_crossing(v, 0.1), [2, -1, 1])


def _dataset():
    """2 learning rates × 1 batch size × 3 seeds × 5 recorded steps, values chosen by hand."""
    steps = np.array([0, 10, 20, 30, 40])
    err = np.array(
        [
            [[0.5, 0.3, 0.1, 0.0, 0.0], [0.5, 0.4, 0.3, 0.2, 0.15], [0.5, 0.3, 0.2, 0.1, 0.0]],  # η = 0.05
            [[0.5, 0.1, 0.0, 0.0, 0.0], [0.5, 0.2, 0.1, 0.0, 0.0], [0.5, 0.1, 0.1, 0.0, 0.0]],  # η = 0.1
        ]
    )[:, None]
    rate = np.broadcast_to(np.arange(5.0), err.shape) / 10 + np.array([0.0, 0.01])[:, None, None, None]
    vn = np.broadcast_to(np.arange(5.0)[::-1], err.shape) + np.array([0.0, 0.5])[:, None, None, None]
    dims = ("lr", "batch_size", "seed", "step")
    return xr.Dataset(
        {
            "error": (dims, err),
            "activation_rate": (dims, rate.copy()),
            "v_norm": (dims, vn.copy()),
            "diverged": (dims[:3], np.zeros((2, 1, 3), bool)),
        },
        coords={"lr": [0.05, 0.1], "batch_size": [1], "seed": [0, 1, 2], "step": steps},
    )


def test_at_first_crossing_picks_values_at_the_crossing():
    res = at_first_crossing(_dataset(), 0.1)
    np.testing.assert_array_equal(res["step_at_target"].sel(batch_size=1).values, [[20, -1, 30], [10, 20, 10]])
    np.testing.assert_allclose(res["activation_rate"].sel(lr=0.05, batch_size=1).values, [0.2, np.nan, 0.3])
    np.testing.assert_allclose(res["activation_rate"].sel(lr=0.1, batch_size=1).values, [0.11, 0.21, 0.11])
    np.testing.assert_allclose(res["v_norm"].sel(lr=0.1, batch_size=1).values, [3.5, 2.5, 3.5])


def test_summary_pairs_and_fractions():
    s = equal_error_summary(at_first_crossing(_dataset(), 0.1))
    rows = {r["lr"]: r for r in s["rows"]}
    assert rows[0.05]["reached"] == 2 and rows[0.1]["reached"] == 3
    np.testing.assert_allclose(rows[0.05]["lr_times_step"], 0.05 * 25)
    (p,) = s["pairs"]
    # Seeds 0 and 2 reached for both: σ1 = (0.2, 0.3) vs σ2 = (0.11, 0.11); v1 = (2, 1) vs v2 = (3.5, 3.5).
    assert p["seeds"] == 2 and p["frac_sigma1_ge_sigma2"] == 1.0 and p["frac_v1_ge_v2"] == 0.0
    np.testing.assert_allclose(p["sigma1_minus_sigma2"], np.mean([0.09, 0.19]))


def test_diverged_replicas_never_reach():
    ds = _dataset()
    ds["diverged"][0, 0, 0] = True
    assert at_first_crossing(ds, 0.1)["step_at_target"].values[0, 0, 0] == -1


@pytest.mark.parametrize(
    "argv",
    [
        ["equal-error", "--target", "1.5"],
        ["equal-error", "--seeds", "1"],
        ["equal-error", "--lr", "0.1"],
        ["equal-error", "--steps", "0"],
        ["equal-error", "--seeds", "many"],
    ],
)
def test_cli_bad_input_exits_2(argv):
    assert main(argv) == 2


def test_cli_quick_json(capsys):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["equal-error", "--quick", "--steps", "400", "--target", "0.3", "--json"]) == 0
    finally:
        torch.set_num_threads(before)
    out = json.loads(capsys.readouterr().out)
    assert [r["lr"] for r in out["rows"]] == [0.05, 0.2]
    assert out["pairs"][0]["seeds"] <= 4
