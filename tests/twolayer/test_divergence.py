"""Runaway replicas: caught by the loss criterion before they overflow, and frozen."""

import numpy as np
import pytest

from thermosgd.config import from_dict
from thermosgd.errors import UsageError
from thermosgd.twolayer.engine import train

K = 100.0


def _cfg(factor):
    # 20 Gaussian inputs: η·E‖x‖² = 8 at η = 0.4 runs away (float64: no overflow in 600 steps),
    # 1 at η = 0.05 does not.
    return from_dict(
        {
            "model": {"inputs": 20, "hidden": 20},
            "train": {
                "lr": [0.05, 0.4],
                "seeds": 3,
                "steps": 600,
                "record_every": 5,
                "probe_every": 20,
                "runaway_factor": factor,
                "dtype": "float64",
            },
        }
    )


@pytest.fixture(scope="module")
def runs():
    return train(_cfg(0.0)), train(_cfg(K))


def test_runaway_is_finite_so_the_old_check_misses_it(runs):
    off, _ = runs
    assert not off.diverged.any()
    assert np.isfinite(off.v_norm.values).all()
    loss = off.loss.dropna("step", how="all")
    assert (loss.sel(lr=0.4).max("step") > K * loss.sel(lr=0.4).isel(step=0)).all()


def test_flagged_at_the_first_probe_step_past_k_times_the_initial_loss(runs):
    """Twin: the step read off the unflagged run's records by hand."""
    off, on = runs
    assert on.diverged.sel(lr=0.4).all() and not on.diverged.sel(lr=0.05).any()
    loss = off.loss.dropna("step", how="all")
    for seed in off.seed.values:
        series = loss.sel(lr=0.4, seed=seed).squeeze()
        first = next(int(s) for s, v in zip(series.step.values, series.values) if v > K * series.values[0])
        assert int(on.diverged_step.sel(lr=0.4, seed=seed).squeeze()) == first


def test_recorded_up_to_the_flag_then_frozen(runs):
    off, on = runs
    for seed in on.seed.values:
        a, b = (ds.sel(lr=0.4, seed=seed).squeeze() for ds in (on, off))
        t = int(a.diverged_step)
        np.testing.assert_array_equal(
            a.v_norm.sel(step=slice(None, t)).values, b.v_norm.sel(step=slice(None, t)).values
        )
        assert np.isnan(a.v_norm.sel(step=slice(t + 1, None)).values).all()
    # Replicas never mix: the stable ones are bit-identical with and without the criterion.
    np.testing.assert_array_equal(on.v_norm.sel(lr=0.05).values, off.v_norm.sel(lr=0.05).values)


def test_criterion_is_stored(runs):
    off, on = runs
    assert "100× its initial value" in on.attrs["divergence_criterion"]
    assert off.attrs["divergence_criterion"] == "non-finite parameters"


@pytest.mark.parametrize("bad", [1.0, 0.5, -3.0, float("nan"), float("inf")])
def test_runaway_factor_is_validated(bad):
    with pytest.raises(UsageError, match="runaway_factor"):
        from_dict({"train": {"runaway_factor": bad}})
