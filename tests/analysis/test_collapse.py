"""Collapse fit on synthetic sweeps with known exponents, its bad inputs, and its panel."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import xarray as xr
from matplotlib.figure import Figure

from thermosgd.analysis.collapse import CollapseFit, fit_collapse, parse_window
from thermosgd.errors import UsageError
from thermosgd.figures.collapse import collapse_figure, collapse_panel
from thermosgd.figures.save import save_figure

LRS = np.array([0.025, 0.05, 0.1])
BATCHES = np.array([1, 2, 3, 4])
TOL = 0.1  # on the fitted exponent; the synthetic sweeps' bootstrap std is about 0.03


def synthetic_sweep(exponent, over="lr", n_seeds=8, seed=0, noise=0.02, spread=0.1, steps=1000, every=10):
    """m(t) = exp(−c_s · rate(x) · t) + white noise, rate ∝ (η/0.05)^α or (|B|/2)^(−β).

    Each seed s has its own rate multiplier c_s = 1 + spread·N(0, 1), so the
    seeds differ the way SGD replicas do and the bootstrap has something to resample.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(0, steps + 1, every)
    lrs, batches = (LRS, np.array([1])) if over == "lr" else (np.array([0.05]), BATCHES)
    data = np.empty((lrs.size, batches.size, n_seeds, t.size))
    for i, lr in enumerate(lrs):
        for j, bs in enumerate(batches):
            rate = 3.0 / steps * ((lr / 0.05) ** exponent if over == "lr" else (bs / 2.0) ** (-exponent))
            for s in range(n_seeds):
                c = 1 + spread * rng.standard_normal()
                data[i, j, s] = np.exp(-c * rate * t) + noise * rng.standard_normal(t.size)
    return xr.Dataset(
        {
            "activation_rate": (("lr", "batch_size", "seed", "step"), data),
            "v_norm": (("lr", "batch_size", "seed", "step"), 2.0 * data),
            "diverged": (("lr", "batch_size", "seed"), np.zeros(data.shape[:3], bool)),
        },
        coords={"lr": lrs, "batch_size": batches, "seed": np.arange(n_seeds), "step": t},
        attrs={"config": json.dumps({"synthetic": True})},
    )


@pytest.fixture(scope="module")
def lr_sweep():
    return synthetic_sweep(2.0)


@pytest.fixture(scope="module")
def lr_fit(lr_sweep):
    return fit_collapse(lr_sweep, "activation_rate", "lr", n_boot=100, seed=0)


def test_recovers_alpha_2_with_ci(lr_fit):
    assert abs(lr_fit.exponent - 2.0) < TOL
    assert lr_fit.ci_low <= 2.0 <= lr_fit.ci_high
    assert lr_fit.ci_high - lr_fit.ci_low < 0.5
    assert lr_fit.n_seeds == 8 and lr_fit.n_boot == 100
    assert lr_fit.reference == 0.05 and lr_fit.values == (0.025, 0.05, 0.1)
    # the rescaled curves overlap far better than the raw ones
    assert lr_fit.score < 0.01 < lr_fit.score_raw
    assert lr_fit.score <= lr_fit.score_predicted + 1e-12


@pytest.mark.parametrize(("exponent", "over"), [(1.0, "lr"), (0.0, "lr"), (1.0, "batch_size")])
def test_recovers_known_exponents(exponent, over):
    fit = fit_collapse(synthetic_sweep(exponent, over, seed=1), "activation_rate", over, n_boot=40, seed=1)
    assert abs(fit.exponent - exponent) < TOL
    assert fit.ci_low <= exponent <= fit.ci_high


def test_score_is_scale_free_and_zero_for_exact_collapse():
    exact = synthetic_sweep(2.0, noise=0.0, spread=0.0)
    fit = fit_collapse(exact, "activation_rate", "lr", n_boot=0)
    assert abs(fit.exponent - 2.0) < 0.01  # linear interpolation error only
    assert fit.score < 1e-5
    scaled = exact.assign(activation_rate=1e3 * exact["activation_rate"])
    fit_scaled = fit_collapse(scaled, "activation_rate", "lr", n_boot=0)
    assert fit_scaled.exponent == pytest.approx(fit.exponent, abs=1e-6)
    assert fit_scaled.score == pytest.approx(fit.score, rel=1e-6)


def test_window_removes_a_non_thermophoretic_transient():
    # A fast transient that scales with η (α = 1) on top of the η² decay: it biases the
    # unwindowed fit; starting the window at τ = 400 reference iterations removes it.
    ds = synthetic_sweep(2.0, noise=0.01)
    transient = np.exp(-ds["step"] * (ds["lr"] / 0.05) / 50)
    ds = ds.assign(activation_rate=ds["activation_rate"] + transient)
    biased = fit_collapse(ds, "activation_rate", "lr", n_boot=0)
    windowed = fit_collapse(ds, "activation_rate", "lr", window="400:", n_boot=40)
    assert abs(biased.exponent - 2.0) > 0.2
    assert abs(windowed.exponent - 2.0) < TOL
    assert windowed.ci_low <= 2.0 <= windowed.ci_high
    assert windowed.window == (400.0, None)


def test_diverged_replicas_are_excluded(lr_sweep):
    ds = lr_sweep.copy(deep=True)
    ds["activation_rate"][2, 0, :3] = 1e6  # garbage, flagged as diverged
    ds["diverged"][2, 0, :3] = True
    fit = fit_collapse(ds, "activation_rate", "lr", n_boot=20)
    assert abs(fit.exponent - 2.0) < TOL and fit.score < 0.01
    # a value whose every replica diverged is dropped
    ds["diverged"][0, 0, :] = True
    assert fit_collapse(ds, "activation_rate", "lr", n_boot=0).values == (0.05, 0.1)


def test_bootstrap_is_seeded(lr_sweep):
    a = fit_collapse(lr_sweep, "activation_rate", "lr", n_boot=10, seed=7)
    b = fit_collapse(lr_sweep, "activation_rate", "lr", n_boot=10, seed=7)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)


def test_to_dict_is_json(lr_fit):
    d = json.loads(lr_fit.to_json())
    assert {"metric", "over", "exponent", "ci_low", "ci_high", "n_seeds", "score"} <= d.keys()
    assert d["metric"] == "activation_rate" and d["over"] == "lr"
    no_ci = fit_collapse(synthetic_sweep(2.0, n_seeds=1), "activation_rate", "lr", n_boot=0)
    assert math.isnan(no_ci.ci_low) and no_ci.to_dict()["ci_low"] is None
    assert isinstance(no_ci, CollapseFit)


@pytest.mark.parametrize(
    ("mutate", "kwargs", "message"),
    [
        (lambda ds: ds, {"metric": "nope"}, "unknown metric 'nope'"),
        (lambda ds: ds, {"over": "momentum"}, "cannot fit over 'momentum'"),
        (lambda ds: ds, {"over": "batch_size"}, "1 batch_size value"),
        (lambda ds: ds.isel(batch_size=0, drop=True), {"over": "batch_size"}, "no 'batch_size' dimension"),
        (lambda ds: ds.isel(lr=[1]), {}, "1 lr value"),
        (lambda ds: ds.isel(seed=[0]), {}, "at least 2 seeds"),
        (lambda ds: ds, {"window": "5000:"}, "does not overlap"),
        (lambda ds: ds, {"window": (500, 100)}, "must be below"),
        (lambda ds: ds.expand_dims(width=[10, 20]), {}, "select one width"),
    ],
)
def test_bad_input_is_a_usage_error(lr_sweep, mutate, kwargs, message):
    args = {"metric": "activation_rate", "over": "lr", "n_boot": 5} | kwargs
    with pytest.raises(UsageError, match=message):
        fit_collapse(mutate(lr_sweep), **args)


def test_parse_window():
    assert parse_window("100:") == (100.0, None)
    assert parse_window(":2e3") == (None, 2000.0)
    assert parse_window(None) is None
    for bad in ("100", "a:b", "1:2:3"):
        with pytest.raises(UsageError):
            parse_window(bad)


def test_panel_and_figure(lr_sweep, lr_fit, tmp_path):
    fig = Figure()
    ax = fig.subplots()
    collapse_panel(ax, lr_sweep, "activation_rate", "lr", lr_fit.exponent, window=(100, None))
    assert len(ax.lines) == 3
    full = collapse_figure(lr_sweep, lr_fit)
    assert len(full.axes) == 4  # raw, η, η², fitted
    paths = save_figure(full, tmp_path / "figs" / "collapse")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)
    batch_fit = fit_collapse(synthetic_sweep(1.0, "batch_size"), "activation_rate", "batch_size", n_boot=0)
    assert len(collapse_figure(synthetic_sweep(1.0, "batch_size"), batch_fit).axes) == 3


@pytest.mark.parametrize("over", ["lr", "batch_size"])
def test_vectorized_scan_equals_the_one_exponent_score(over):
    """The fit scans exponents with ``collapse_scores``; its twin is ``collapse_score``
    called once per exponent (window, a NaN curve point and the bounds included)."""
    from thermosgd.analysis.collapse import _grid, _scale, collapse_score, collapse_scores, mean_curves, sweep_data

    ds = synthetic_sweep(1.0 if over == "batch_size" else 2.0, over=over)
    values, steps, raw, alive = sweep_data(ds, "activation_rate", over)
    curves = mean_curves(raw, alive)
    curves[1, 7] = np.nan  # a recording gap in one curve
    for window in [(None, None), (200.0, 800.0)]:
        grid = _grid(steps, window, 200)
        scale = _scale(curves, steps, window)
        exps = np.linspace(-2.0, 5.0, 71)
        fast = collapse_scores(curves, steps, values, over, exps, float(values[1]), grid, scale)
        slow = np.array([collapse_score(curves, steps, values, over, e, float(values[1]), grid, scale) for e in exps])
        np.testing.assert_allclose(fast, slow, rtol=1e-9)


def test_bootstrap_weights_equal_resampled_means(lr_sweep):
    """The bootstrap averages with draw counts as weights; twin: indexing the resample."""
    from thermosgd.analysis.collapse import _weighted_means, mean_curves, sweep_data

    _, _, raw, alive = sweep_data(lr_sweep, "activation_rate", "lr")
    alive = alive.copy()
    alive[0, 2] = False  # a diverged replica
    alive[2, :] = False  # a swept value with no survivor: NaN either way
    masked = np.where(alive[..., None], raw, 0.0)
    for seed in range(5):
        idx = np.random.default_rng(seed).integers(0, raw.shape[1], raw.shape[1])
        fast = _weighted_means(masked, alive, np.bincount(idx, minlength=raw.shape[1]))
        np.testing.assert_allclose(fast, mean_curves(raw, alive, idx), rtol=1e-12)
        assert np.isnan(fast[2]).all()
