"""Verdicts: what is left out is counted and said; a whole unstable value is named."""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from thermosgd.analysis.verdict import NOT_MEASURED, judge, left_out


def _family(alpha=2.0, seeds=6, seed=0, diverged_lr=None):
    """Curves exp(-t·η^α/τ) with independent noise; optionally every replica at one η flagged."""
    rng = np.random.default_rng(seed)
    lrs, steps = np.array([0.025, 0.05, 0.1]), np.arange(0, 2001, 20)
    tau = 400 * 0.05**alpha
    m = np.exp(-steps[None, None, :] * lrs[:, None, None] ** alpha / tau) + 0.01 * rng.standard_normal(
        (3, seeds, steps.size)
    )
    div = np.zeros((3, 1, seeds), bool)
    dstep = np.full((3, 1, seeds), -1)
    if diverged_lr is not None:
        i = int(np.flatnonzero(lrs == diverged_lr)[0])
        div[i] = True
        dstep[i] = 700
        m[i, :, 40:] = 1e6  # a runaway: the curve blows up
    ds = xr.Dataset(
        {
            "activation_rate": (("lr", "batch_size", "seed", "step"), m[:, None]),
            "diverged": (("lr", "batch_size", "seed"), div),
            "diverged_step": (("lr", "batch_size", "seed"), dstep),
        },
        coords={"lr": lrs, "batch_size": [1], "seed": np.arange(seeds), "step": steps},
    )
    ds.attrs["config"] = json.dumps({"model": {"inputs": 100}, "data": {"inputs": "gaussian"}})
    ds.attrs["divergence_criterion"] = "probe loss > 100 × initial"
    return ds


def test_clean_family_agrees_and_leaves_nothing_out():
    v = judge(_family(), "t", "activation_rate", "lr", n_boot=50)
    # The interval's calibration is tested in test_collapse; here: a fit near the true α, nothing left out.
    assert v.status != NOT_MEASURED and abs(v.exponent - 2.0) < 0.05
    assert v.left_out == () and "left out" not in v.line()
    assert v.status.upper() in v.line() and "consistent" not in v.line()


def test_unstable_value_is_named_with_its_count_step_and_load():
    ds = _family(diverged_lr=0.1)
    (x,) = left_out(ds, "lr")
    assert (x.value, x.count, x.of, x.median_step) == (0.1, 6, 6, 700) and x.all
    assert abs(x.step_size_load - 10.0) < 1e-12  # η·E‖x‖² = 0.1 · 100 Gaussian inputs
    v = judge(ds, "t", "activation_rate", "lr", n_boot=50)
    line = v.line()
    assert "η = 0.1: 6/6 replicas unstable from step ~700" in line and "left out" in line
    assert "probe loss > 100" in line
    assert abs(v.exponent - 2.0) < 0.05  # the two stable η still collapse at α = 2


def test_include_diverged_puts_the_runaways_back():
    ds = _family(diverged_lr=0.1)
    kept = judge(ds, "t", "activation_rate", "lr", n_boot=50, include_diverged=True)
    left = judge(ds, "t", "activation_rate", "lr", n_boot=50)
    assert kept.included_diverged and "kept (--include-diverged)" in kept.line()
    assert kept.exponent != left.exponent


def test_not_measured_says_why():
    ds = _family().isel(lr=[0])
    v = judge(ds, "t", "activation_rate", "lr")
    assert v.status == NOT_MEASURED and "2 swept values" in v.line()
    v = judge(_family(), "t", "v_norm", "lr")
    assert v.status == NOT_MEASURED and "no 'v_norm'" in v.note


def test_too_few_seeds_give_no_agree_or_disagree():
    v = judge(_family(seeds=3), "t", "activation_rate", "lr", n_boot=50)
    assert v.status == "inconclusive" and "only 3 seeds" in v.line() and v.exponent is not None
    # No interval is stated (a 3-seed bootstrap's is an artefact); the fit keeps it on record.
    assert v.ci_low is None and v.ci_high is None and "CI [" not in v.line() and "no CI" in v.line()
    assert v.fitted() == f"α = {v.exponent:.2f} (no CI)" and np.isfinite(v.fit["ci_low"])
    enough = judge(_family(seeds=6), "t", "activation_rate", "lr", n_boot=50)
    assert enough.fitted() == f"α = {enough.exponent:.2f} [{enough.ci_low:.2f}, {enough.ci_high:.2f}]"
