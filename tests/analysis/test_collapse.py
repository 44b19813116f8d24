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


# --- Noise-corrected score: twins, unbiasedness, common random numbers -------------------------

from thermosgd.analysis.collapse import _score as scoring  # noqa: E402
from thermosgd.analysis.collapse import (  # noqa: E402
    collapse_score,
    default_reference,
    expanded_percentiles,
    mean_curves,
    sweep_data,
)
from thermosgd.analysis.collapse._data import _check_window, _grid  # noqa: E402
from thermosgd.analysis.collapse._score import _Scorer  # noqa: E402
from thermosgd.analysis.collapse._search import _exponent_grid, _search  # noqa: E402


def _seed_curves_on_grid(data, steps, values, over, exponent, reference, grid):
    """Every replica's curve on the grid with np.interp, NaN where its value does not cover τ."""
    sign = 1.0 if over == "lr" else -1.0
    out = np.full(data.shape[:2] + grid.shape, np.nan)
    for k, x in enumerate(values):
        tau = steps * (x / reference) ** (sign * exponent)
        covered = (grid >= tau[0]) & (grid <= tau[-1])
        for s in range(data.shape[1]):
            out[k, s, covered] = np.interp(grid[covered], tau, data[k, s])
    return out


def twin_score(data, alive, steps, values, over, exponent, reference, grid, method, seeds=None):
    """Slow twin of the score numerator / Σ(n−1), with explicit loops over seed pairs.

    ``seeds`` is a bootstrap resample as a list of original seed indices; products of two
    copies of the same original seed are left out of the noise-corrected terms.
    """
    x = _seed_curves_on_grid(data, steps, values, over, exponent, reference, grid)
    seeds = list(range(data.shape[1])) if seeds is None else list(seeds)
    num = den = 0.0
    for g in range(grid.size):
        present = [k for k in range(len(values)) if np.isfinite(x[k, 0, g])]
        n = len(present)
        if n < 2:
            continue
        den += n - 1
        for i, k in enumerate(present):
            for k2 in present[i + 1 :]:
                if method == "paired":
                    d = [x[k, s, g] - x[k2, s, g] for s in seeds if alive[k, s] and alive[k2, s]]
                    orig = [s for s in seeds if alive[k, s] and alive[k2, s]]
                    prods = [d[a] * d[b] for a in range(len(d)) for b in range(len(d)) if orig[a] != orig[b]]
                    term = np.mean(prods)
                else:
                    a = [(s, x[k, s, g]) for s in seeds if alive[k, s]]
                    b = [(s, x[k2, s, g]) for s in seeds if alive[k2, s]]
                    mean_a, mean_b = np.mean([v for _, v in a]), np.mean([v for _, v in b])
                    term = (mean_a - mean_b) ** 2
                    if method == "independent":
                        # μ_k² estimated by the mean of x_i x_j over copies of distinct original seeds
                        def u_stat(c):
                            return np.mean([vi * vj for si, vi in c for sj, vj in c if si != sj])

                        term = u_stat(a) + u_stat(b) - 2 * mean_a * mean_b
                        if len(set(seeds)) == len(seeds):  # no resample: the textbook form
                            textbook = (
                                (mean_a - mean_b) ** 2
                                - np.var([v for _, v in a], ddof=1) / len(a)
                                - np.var([v for _, v in b], ddof=1) / len(b)
                            )
                            assert term == pytest.approx(textbook, rel=1e-9, abs=1e-15)
                num += term / n
    return num / den


def _problem(ds, over="lr", window=None):
    values, steps, raw, alive = sweep_data(ds, "activation_rate", over)
    grid = _grid(steps, _check_window(window), 40)
    return values, steps, raw, alive, default_reference(values), grid


@pytest.mark.parametrize("route", ["forms", "sums"])
@pytest.mark.parametrize("method", ["paired", "independent", "plain"])
def test_score_matches_slow_twin(method, route):
    # 5 seeds, one diverged at η = 0.1 only, so the paired and independent terms see different survivors.
    # Both evaluations of the quadratic form (w·M·w and the weighted sums) against the loops over seed pairs.
    ds = synthetic_sweep(1.0, n_seeds=5, seed=3, steps=200, every=20, noise=0.05)
    ds["diverged"][2, 0, 1] = True
    values, steps, raw, alive, ref, grid = _problem(ds)
    scorer = _Scorer(raw, alive, steps, values, "lr", ref, grid, method)
    exps = np.array([-0.7, 0.0, 0.45, 1.3])
    ones = np.ones((1, 5))
    fast = scorer.scores(exps, ones, scorer.denominators(ones), route)[0]
    slow = [twin_score(raw, alive, steps, values, "lr", e, ref, grid, method) for e in exps]
    np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-15)
    # a bootstrap resample as multiplicities: seed 0 three times, seed 4 twice, seed 2 once
    resample = [0, 0, 0, 4, 4, 2]
    w = np.bincount(resample, minlength=5)[None, :].astype(float)
    fast_w = scorer.scores(exps, w, scorer.denominators(w), route)[0]
    slow_w = [twin_score(raw, alive, steps, values, "lr", e, ref, grid, method, seeds=resample) for e in exps]
    np.testing.assert_allclose(fast_w, slow_w, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("route", ["forms", "sums"])
def test_plain_score_is_the_plug_in_score_of_the_mean_curves(lr_sweep, route):
    values, steps, raw, alive, ref, grid = _problem(lr_sweep, window=(50, 900))
    scorer = _Scorer(raw, alive, steps, values, "lr", ref, grid, "plain")
    ones = np.ones((1, raw.shape[1]))
    for e in (-1.0, 0.0, 1.7, 2.0, 4.0):
        fast = scorer.scores(np.array([e]), ones, scorer.denominators(ones), route)[0, 0]
        assert fast == pytest.approx(
            collapse_score(mean_curves(raw, alive), steps, values, "lr", e, ref, grid, 1.0), rel=1e-9
        )


def _resamples(n_seeds, n_boot, seed):
    """``(1 + n_boot, S)`` seed multiplicities: the data, then bootstrap resamples (as :func:`fit_collapse`)."""
    idx = np.random.default_rng(seed).integers(0, n_seeds, size=(n_boot, n_seeds))
    return np.concatenate([np.ones((1, n_seeds)), np.stack([np.bincount(r, minlength=n_seeds) for r in idx])])


def _row_by_row_search(scorer, weights, dens, bounds, route):
    """Slow twin of ``_search``: each row alone, the coarse grid, its cell's fine lattice, a parabola."""
    coarse = _exponent_grid(bounds, 0.1)
    fine = np.linspace(coarse[0], coarse[-1], (coarse.size - 1) * 10 + 1)
    found = []
    for w, d in zip(weights, dens):
        i = int(np.argmin(scorer.scores(coarse, w[None], d[None], route)[0]))
        cell = fine[max(i - 1, 0) * 10 : min(i + 1, coarse.size - 1) * 10 + 1]
        sc = scorer.scores(cell, w[None], d[None], route)[0]
        j = min(max(int(np.argmin(sc)), 1), cell.size - 2)
        y0, y1, y2 = sc[j - 1 : j + 2]
        shift = 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2) if y0 - 2 * y1 + y2 > 0 else 0.0
        found.append(min(max(cell[j] + min(max(shift, -1.0), 1.0) * (fine[1] - fine[0]), cell[0]), cell[-1]))
    return np.array(found)


@pytest.mark.parametrize("route", ["forms", "sums"])
@pytest.mark.parametrize("method", ["paired", "independent"])
def test_search_matches_row_by_row_twin(method, route, monkeypatch):
    # All resamples at once (in chunks of 3–7 rows and blocks of 1–7 exponents, to cross their
    # edges) against one resample at a time; 12 seeds, two diverged at different values, 40
    # resamples (seed 1). Equal to round-off: 1e-9 on the exponents.
    monkeypatch.setattr(scoring, "_TABLES", 1344)  # numbers per chunk of (T + 1 = 32)-step tables
    monkeypatch.setattr(scoring, "_BLOCK", 840)  # numbers per block of 40-point grids
    ds = synthetic_sweep(1.0, n_seeds=12, seed=5, steps=300, every=10, noise=0.05)
    ds["diverged"][2, 0, 4] = True
    ds["diverged"][0, 0, 9] = True
    values, steps, raw, alive, ref, grid = _problem(ds)
    scorer = _Scorer(raw, alive, steps, values, "lr", ref, grid, method)
    weights = _resamples(12, 40, seed=1)
    dens = scorer.denominators(weights)
    ok = (dens > 0).all(axis=1)
    weights, dens = weights[ok], dens[ok]
    monkeypatch.setattr(scorer, "route", lambda: route)
    found, cells = _search(scorer, weights, dens, (-1.0, 3.0))
    assert np.unique(cells).size >= 2  # rows in several coarse cells
    np.testing.assert_allclose(found, _row_by_row_search(scorer, weights, dens, (-1.0, 3.0), route), rtol=0, atol=1e-9)


@pytest.mark.parametrize("pairing", ["paired", "independent", "plain"])
def test_fit_is_the_same_with_either_evaluation(pairing, monkeypatch):
    # The whole fit (search, Brent polish, bootstrap percentiles) with the forms and with the
    # weighted sums: the same exponent, interval and scores to 1e-9 (30 seeds, one diverged, n_boot = 300).
    ds = synthetic_sweep(2.0, n_seeds=30, seed=2, steps=400, every=10)
    ds["diverged"][1, 0, 7] = True
    fits = {}
    for route, ratio in (("forms", math.inf), ("sums", 0.0)):
        monkeypatch.setattr(scoring, "_FORMS_RATIO", ratio)
        fits[route] = fit_collapse(ds, "activation_rate", "lr", n_boot=300, seed=4, pairing=pairing)
    a, b = fits["forms"].to_dict(), fits["sums"].to_dict()
    for key in ("exponent", "ci_low", "ci_high", "boot_std", "score", "score_raw", "score_predicted"):
        assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-12), key
    assert a["n_boot"] == b["n_boot"] == 300


def test_evaluation_is_chosen_by_cost():
    # few seeds: the (S, S) forms; many: the weighted sums, whose cost does not grow with S
    ds = synthetic_sweep(2.0, n_seeds=400, steps=100)
    for n_seeds, route in ((8, "forms"), (400, "sums")):
        values, steps, raw, alive, ref, grid = _problem(ds.isel(seed=slice(0, n_seeds)))
        assert _Scorer(raw, alive, steps, values, "lr", ref, grid, "paired").route() == route


def common_noise_sweep(seed, alpha=1.0, drift=0.05, noise=0.7, n_seeds=8, steps=1000, every=10, common=True):
    """m_η(t) = exp(−3 t (η/0.05)^α / T) + drift·log2(η/0.05) + ε_s(t).

    ε_s is white noise of std ``noise``; with ``common=True`` the SAME path ε_s(t) (in raw
    time) is added to every η's curve of seed s, as shared data streams do. ``seed=None``
    gives the noise-free curves (one seed). The drift moves the noise-free best exponent
    away from α.
    """
    t = np.arange(0, steps + 1, every)
    rng = np.random.default_rng(seed)
    n_seeds = 1 if seed is None else n_seeds
    data = np.empty((LRS.size, 1, n_seeds, t.size))
    paths = rng.standard_normal((n_seeds, t.size)) if seed is not None else np.zeros((n_seeds, t.size))
    for k, lr in enumerate(LRS):
        f = (lr / 0.05) ** alpha
        for s in range(n_seeds):
            eps = paths[s] if common or seed is None else rng.standard_normal(t.size)
            data[k, 0, s] = np.exp(-3.0 * t * f / steps) + drift * np.log2(lr / 0.05) + noise * eps
    config = {"train": {"share_data": common, "share_init": common}}
    return xr.Dataset(
        {"activation_rate": (("lr", "batch_size", "seed", "step"), data)},
        coords={"lr": LRS, "batch_size": [1], "seed": np.arange(n_seeds), "step": t},
        attrs={"config": json.dumps(config)},
    )


def test_noise_corrected_score_is_unbiased_under_common_noise():
    # E[score] over noise draws equals the noise-free score at every exponent, in particular at
    # 0 where shared streams cancel; the plug-in score is biased up except near 0 (the dip).
    # 300 draws of 8 seeds (seeds 0..299); tolerance 4 standard errors of the mean.
    clean = common_noise_sweep(None)
    values, steps, raw0, alive0, ref, grid = _problem(clean)
    exps = np.array([0.0, 0.4, 0.8, 2.0])
    truth = _Scorer(raw0, alive0, steps, values, "lr", ref, grid, "plain")
    one = np.ones((1, 1))
    target = truth.scores(exps, one, truth.denominators(one))[0]
    got = {"paired": [], "plain": []}
    for seed in range(300):
        _, _, raw, alive, _, _ = _problem(common_noise_sweep(seed, noise=0.3))
        w = np.ones((1, raw.shape[1]))
        for method in got:
            sc = _Scorer(raw, alive, steps, values, "lr", ref, grid, method)
            got[method].append(sc.scores(exps, w, sc.denominators(w))[0])
    paired, plain = np.array(got["paired"]), np.array(got["plain"])
    se = paired.std(axis=0, ddof=1) / np.sqrt(len(paired))
    # (at exponent 0 the common noise cancels exactly in d_s: se ~ 0, hence the round-off allowance)
    assert np.all(np.abs(paired.mean(axis=0) - target) < 4 * se + 1e-12)
    bias = plain.mean(axis=0) - target
    assert abs(bias[0]) < 0.1 * bias[1:].min()  # the dip: almost no noise term at exponent 0 ...
    assert np.all(bias[1:] > 10 * se[1:])  # ... and a large one elsewhere


NOISE_FREE_ALPHA = 0.77  # noise-free best exponent of common_noise_sweep (α = 1 + drift); checked below


def test_common_noise_ci_covers_the_noise_free_exponent():
    # 5 draws (seeds 0..4) of the common-noise family, 8 seeds, n_boot = 1000 (bootstrap seed = draw):
    # the interval must cover the noise-free exponent in >= 4 of 5 and be wider than 0.1.
    truth = fit_collapse(common_noise_sweep(None), "activation_rate", "lr", n_boot=0, pairing="plain").exponent
    assert truth == pytest.approx(NOISE_FREE_ALPHA, abs=0.01)
    covered, plain_at_zero = 0, 0
    for draw in range(5):
        ds = common_noise_sweep(draw)
        fit = fit_collapse(ds, "activation_rate", "lr", seed=draw)
        assert fit.score_method == "paired" and fit.n_boot == 1000
        assert fit.ci_high - fit.ci_low > 0.1
        covered += fit.ci_low <= truth <= fit.ci_high
        # the plug-in score falls into the α = 0 dip (what this test guards against)
        plain = fit_collapse(ds, "activation_rate", "lr", n_boot=0, pairing="plain")
        plain_at_zero += abs(plain.exponent) < 0.01
    assert covered >= 4
    assert plain_at_zero >= 4


def test_independent_noise_with_independent_score():
    # The same family with independent noise and a config that says so: the independent-streams
    # score is used and its interval covers the noise-free exponent (seed 11, n_boot = 300).
    ds = common_noise_sweep(11, noise=0.3, common=False)
    fit = fit_collapse(ds, "activation_rate", "lr", n_boot=300, seed=11)
    assert fit.score_method == "independent"
    assert fit.ci_low <= NOISE_FREE_ALPHA <= fit.ci_high
    assert fit.to_dict()["score_method"] == "independent" and "percentile" in fit.to_dict()["interval"]


def test_score_method_choice(lr_sweep):
    # config without stream information: paired (valid whatever the correlation between values)
    assert fit_collapse(lr_sweep, "activation_rate", "lr", n_boot=0).score_method == "paired"
    one_seed = synthetic_sweep(2.0, n_seeds=1)
    assert fit_collapse(one_seed, "activation_rate", "lr", n_boot=0).score_method == "plain"
    # seeds 0..3 diverged at η = 0.025 and 4..7 at η = 0.1: no two seeds in common for that pair
    ds = lr_sweep.copy(deep=True)
    ds["diverged"][0, 0, :4] = True
    ds["diverged"][2, 0, 4:] = True
    assert fit_collapse(ds, "activation_rate", "lr", n_boot=0).score_method == "independent"
    with pytest.raises(UsageError, match="paired score needs 2 seeds"):
        fit_collapse(ds, "activation_rate", "lr", n_boot=0, pairing="paired")
    with pytest.raises(UsageError, match="pairing must be one of"):
        fit_collapse(lr_sweep, "activation_rate", "lr", n_boot=0, pairing="yes")


def test_expanded_percentiles():
    # Hesterberg's expansion: Φ(−√(n/(n−1)) t_{n−1,0.975}); for n = 8, t_7 = 2.3646 (table),
    # √(8/7)·2.3646 = 2.5279, Φ(−2.5279) = 0.574 %. Large n gives the plain 2.5 %.
    low, high = expanded_percentiles(8, 0.95)
    assert low == pytest.approx(0.574, abs=0.002) and high == pytest.approx(100 - low)
    assert expanded_percentiles(10**6, 0.95)[0] == pytest.approx(2.5, abs=1e-3)


# --- Degenerate input (issue 14, part 3) ------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "kwargs", "message"),
    [
        (lambda ds: ds, {"window": "0:1"}, "holds 1 recorded step.*at least 2 informative steps"),
        (lambda ds: ds, {"window": "3:9"}, "holds 0 recorded step"),
        (lambda ds: ds.assign(activation_rate=0 * ds["activation_rate"] + 0.5), {}, "constant in time.*no variation"),
        (lambda ds: ds.assign_coords(lr=[0.025, 0.05, 0.05]), {}, "duplicate lr values.*0.05 appears 2 times"),
        (lambda ds: ds.assign(activation_rate=np.nan * ds["activation_rate"]), {}, "NaN .* everywhere"),
        (lambda ds: ds.assign(activation_rate=ds["activation_rate"].astype(str)), {}, "not numeric"),
        (lambda ds: ds, {"seed": -1}, "non-negative integer"),
    ],
)
def test_degenerate_input_is_refused(lr_sweep, mutate, kwargs, message):
    args = {"metric": "activation_rate", "over": "lr", "n_boot": 5} | kwargs
    with pytest.raises(UsageError, match=message) as err:
        fit_collapse(mutate(lr_sweep), **args)
    assert "\n" not in str(err.value)


def test_flat_late_window_is_refused_but_a_varying_one_is_not(lr_sweep):
    # curves that stop changing: a window over the flat part has nothing to fit
    ds = lr_sweep.assign(activation_rate=lr_sweep["activation_rate"].where(lr_sweep["step"] < 500, 0.25))
    with pytest.raises(UsageError, match="constant in time"):
        fit_collapse(ds, "activation_rate", "lr", window="600:", n_boot=0)
    assert np.isfinite(fit_collapse(ds, "activation_rate", "lr", window="0:15", n_boot=0).exponent)
