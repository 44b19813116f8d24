"""Fixtures: a runs folder written by hand, in the formats ``thermosgd reproduce`` writes, with known verdicts.

Building it takes well under a second, so the report's tests do not train
anything; one test in ``test_html.py`` runs a real (tiny) ``reproduce``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from thermosgd import presets


def _png(path: Path) -> None:
    from matplotlib.figure import Figure

    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(2, 1.5), dpi=40)
    fig.add_subplot().plot([0, 1, 2], [0, 1, 0])
    fig.savefig(path)


def _sweep(over: str, values, seeds: int, steps: int, rng) -> xr.Dataset:
    """Curves that collapse on t·x^(±exponent): F(τ) = 0.5 − 0.1 (1 − e^(−τ/50)), plus noise."""
    t = np.arange(0, steps + 1, 2, dtype=float)
    sign, expo = (1.0, 2.0) if over == "lr" else (-1.0, 1.0)
    ref = values[len(values) // 2]
    tau = t[None, :] * (np.asarray(values, float)[:, None] / ref) ** (sign * expo)
    base = 0.5 - 0.1 * (1 - np.exp(-tau / 50))
    rate = base[:, None, :] + 0.002 * rng.standard_normal((len(values), seeds, len(t)))
    vnorm = 0.6 + 0.01 * rng.standard_normal((len(values), seeds, len(t)))
    dims = (over, "seed", "step")
    other = "batch_size" if over == "lr" else "lr"
    ds = xr.Dataset(
        {
            "activation_rate": (dims, rate),
            "v_norm": (dims, vnorm),
            "diverged": ((over, "seed"), np.zeros((len(values), seeds), bool)),
        },
        coords={over: np.asarray(values, float), "seed": np.arange(seeds), "step": t},
    )
    return ds.expand_dims({other: [1.0 if other == "batch_size" else 0.05]})


def _fit(metric, over, exponent, lo, hi, predicted):
    return {
        "metric": metric,
        "over": over,
        "exponent": exponent,
        "ci_low": lo,
        "ci_high": hi,
        "ci_level": 0.95,
        "score": 0.01,
        "predicted": predicted,
        "n_seeds": 4,
        "values": [],
        "bounds": [-2.0, 5.0],
    }


def _twolayer(folder: Path, name: str, fits: dict, rng, *, seeds=4, steps=200, diverged=0) -> None:
    preset = presets.get(name)
    cfg = presets.twolayer_config(preset, seeds=seeds, steps=steps)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    values = preset.params["train"]["lr" if preset.over == "lr" else "batch_size"]
    _sweep(preset.over, values, seeds, steps, rng).to_netcdf(folder / "results.nc")
    summary = {
        "preset": name,
        "experiment": preset.experiment,
        "over": preset.over,
        "steps": steps,
        "seeds": seeds,
        "diverged": diverged,
        "metrics": {"activation_rate": {f"{v:g}": {"initial": 0.5, "final": 0.42} for v in values}},
        "collapse": fits,
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    _png(folder / "figures" / f"{name}.png")


def _walk(folder: Path) -> None:
    folder.mkdir(parents=True)
    main = {
        "eta": 0.2,
        "ratio_eq10": 1.01,
        "ratio_eq10_stderr": 0.02,
        "ratio_fokker_planck": 1.01,
        "ratio_fokker_planck_stderr": 0.02,
    }
    case = {
        "name": "1d-linear",
        "g": "1 + 0.5*q",
        "dim": 1,
        "shared": True,
        "noise": "binary",
        "thermophoretic": {"main": main, "exponent": 2.01, "exponent_stderr": 0.03, "exponent_eq10": 2.0},
        "diffusive": {
            "ratio_eq10": 0.5,
            "ratio_eq10_stderr": 0.02,
            "ratio_fokker_planck": 1.0,
            "ratio_fokker_planck_stderr": 0.04,
        },
        "stationary": {
            "k_fit": 2.0,
            "k_stderr": 0.02,
            "k_eq10": 1.0,
            "k_fokker_planck": 2.0,
            "particles": 4000,
            "steps": 600,
            "eta": 0.2,
        },
    }
    (folder / "walk_report.json").write_text(json.dumps({"quick": True, "seed": 0, "cases": [case], "seconds": 1.5}))
    (folder / ".thermosgd-run.json").write_text(json.dumps({"experiment": "walk", "quick": True}))
    _png(folder / "figures" / "walk_flux.png")


def _deep(folder: Path, rng) -> None:
    folder.mkdir(parents=True)
    config = {
        "preset": "fig2-middle",
        "kind": "deep",
        "model": "mlp",
        "dataset": "gaussian",
        "over": "lr",
        "lrs": [0.025, 0.05],
        "batch_sizes": [1],
        "seeds": 2,
        "steps": 60,
        "figures": ["grad_var"],
    }
    (folder / "config.json").write_text(json.dumps(config))
    ds = _sweep("lr", [0.025, 0.05], 2, 60, rng).rename({"activation_rate": "grad_var"})
    ds.to_netcdf(folder / "results.nc")


def _analysis(root: Path) -> None:
    drift = root / "drift"
    drift.mkdir(parents=True)
    fit = {"alpha": 2.1, "alpha_ci": [1.8, 2.4], "beta": 0.4, "beta_ci": [0.1, 0.7], "sign": -1, "valid_fraction": 1.0}
    (drift / "drift.json").write_text(
        json.dumps({"experiment": "drift", "settings": {"lrs": [0.05, 0.1]}, "fits": {"b_early": fit}})
    )
    eq = root / "equal-error"
    eq.mkdir()
    pair = {
        "lr1": 0.05,
        "lr2": 0.2,
        "seeds": 8,
        "frac_sigma1_ge_sigma2": 0.9,
        "sigma1_minus_sigma2": 0.03,
        "sigma1_minus_sigma2_se": 0.01,
        "frac_v1_ge_v2": 0.2,
        "v1_minus_v2": -0.3,
        "v1_minus_v2_se": 0.1,
    }
    (eq / "equal_error.json").write_text(json.dumps({"experiment": "equal-error", "settings": {}, "pairs": [pair]}))


def make_runs(root: Path, seed: int = 0) -> Path:
    """Write a runs folder: fig3 and fig5 sweeps, the walk, fig2-middle, drift and equal-error."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    _twolayer(
        root / "fig3",
        "fig3",
        {
            "activation_rate": _fit("activation_rate", "lr", 1.95, 1.7, 2.2, 2.0),
            "v_norm": _fit("v_norm", "lr", 0.1, -0.3, 0.5, 2.0),
        },
        rng,
    )
    _twolayer(
        root / "fig5",
        "fig5",
        {"activation_rate": _fit("activation_rate", "batch_size", 1.0, -2.0, 3.0, 1.0), "v_norm": None},
        rng,
        diverged=3,
    )
    _walk(root / "walk")
    _deep(root / "fig2-middle", rng)
    _analysis(root)
    return root


@pytest.fixture
def fake_runs(tmp_path) -> Path:
    """A fresh hand-written runs folder (tests may damage it)."""
    return make_runs(tmp_path / "runs")


@pytest.fixture(scope="module")
def fake_page(tmp_path_factory) -> Path:
    """``index.html`` of a hand-written runs folder, written once per module."""
    from thermosgd.report import write_report

    return write_report(make_runs(tmp_path_factory.mktemp("page") / "runs"))
