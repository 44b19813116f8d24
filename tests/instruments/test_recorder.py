"""Schedules, the Recorder, the results format, and the example script."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from thermosgd.errors import UsageError
from thermosgd.instruments import Recorder, activation_rates, combine_runs, every, log_spaced, weight_norms
from thermosgd.sweep.store import load, save_dataset


def test_schedules():
    assert every(3).steps(10) == [0, 3, 6, 9]
    assert every(4, start=2, last=11).steps(11) == [2, 6, 10, 11]
    steps = log_spaced(1000, 10).steps()
    assert steps[0] == 0 and steps[1] == 1 and steps[-1] == 1000 and len(steps) == 11
    assert steps[1:] == [1, 2, 5, 10, 22, 46, 100, 215, 464, 1000]  # rounded 10**(k/3)
    assert log_spaced(5, 30).steps() == [0, 1, 2, 3, 4, 5]
    with pytest.raises(UsageError):
        every(0)


def test_recorder_layout_and_round_trip(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    x = torch.randn(10, 3)
    runs = []
    for lr in (0.1, 0.2):
        rec = Recorder({"act": lambda m: activation_rates(m, x), "w": weight_norms, "one": lambda m: 1.0}, every(2))
        for step in range(5):
            rec(step, model)
        runs.append(rec.to_dataset(lr=lr, batch_size=4, seed=0, steps=range(7), diverged=lr > 0.15))
    ds = combine_runs(runs, config={"a": 1})
    assert ds["act"].dims == ("lr", "batch_size", "seed", "step")
    assert ds["w_layer"].dims == ("lr", "batch_size", "seed", "step", "layer_w")
    assert list(ds["layer_w"].values) == ["0", "2"]
    assert ds.sizes["step"] == 7 and np.isnan(ds["one"].sel(step=6)).all() and (ds["one"].sel(step=4) == 1).all()
    assert ds["diverged"].dims == ("lr", "batch_size", "seed") and ds["diverged"].values.ravel().tolist() == [
        False,
        True,
    ]
    assert ds.attrs["kind"] == "deep" and json.loads(ds.attrs["config"]) == {"a": 1}
    back = load(save_dataset(ds, tmp_path / "results.nc"))
    assert back["diverged"].dtype == bool
    np.testing.assert_allclose(back["w_layer"].values, ds["w_layer"].values)
    assert list(back["layer_w"].values) == ["0", "2"]


def test_recorder_rejects_unusable_results():
    rec = Recorder({"bad": lambda m: "text"}, every(1))
    with pytest.raises(UsageError, match="instrument 'bad' returned str"):
        rec(0, nn.Linear(1, 1))
