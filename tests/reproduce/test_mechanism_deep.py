"""`reproduce mechanism-deep` end to end at its quick size: studies per noise model, falls, claims, the page."""

import json

import numpy as np
import pytest
import xarray as xr

import thermosgd
from thermosgd import presets
from thermosgd.analysis.verdict import VERDICTS
from thermosgd.report import collect
from thermosgd.reproduce import mechanism_deep as md
from thermosgd.reproduce import reproduce, twolayer

NOISES = ["sgd", "gd", "gaussian", "frozen"]
SEEDS, STEPS = 16, 400  # the default size (docs/mechanism.md)


def test_mechanism_deep_is_in_the_default_set_at_the_largest_eta():
    p = presets.get("mechanism-deep")
    assert p.kind == "mechanism" and p in presets.default_set()
    assert p.size() == (SEEDS, STEPS) and p.settings()["gd_batch"] == 256
    lrs = {md.study_spec(p, n, seeds=4, steps=10)["train"]["lr"][0] for n in NOISES}
    assert lrs == {max(presets.get("fig2-middle-online").params["lrs"])}  # the claims' η, for every noise model


def test_the_forked_controls_are_bit_identical_to_training_here(tmp_path, monkeypatch):
    """gd and gaussian in the side process give the arrays they give in this process."""
    monkeypatch.setattr(twolayer, "usable_cores", lambda: 2)  # fork even on a one-core machine
    real, forked = twolayer._side_process, []
    monkeypatch.setattr(md, "_side_process", lambda: forked.append(real()) or forked[-1])
    p = presets.get("mechanism-deep")
    runs = {
        side: md.run_studies(p, tmp_path / str(side), seeds=2, steps=6, quick=True, progress=False, side=side)
        for side in (False, True)
    }
    assert len(forked) == 1 and forked[0] is not None
    assert list(runs[True]) == NOISES
    for noise in NOISES:
        xr.testing.assert_identical(runs[False][noise], runs[True][noise])


def test_mechanism_deep_quick(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    reproduce(["mechanism-deep"], quick=True, progress=False, margin=0.2)
    out = tmp_path / "runs-quick" / "mechanism-deep"
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(f"fig2-middle-online-{n}" for n in NOISES)
    summary = json.loads((out / "mechanism-deep.json").read_text())
    assert summary["margin"] == 0.2 and summary["settings"]["batch_size"] == [1]
    assert summary["settings"]["gd_residual_noise"] == pytest.approx(1 / 8)  # |B| = 1, quick G = 8
    claims = summary["claims"]
    keys = ["needs_noise", "second_moments_suffice", "needs_theta_dependence"]
    assert [(c["metric"], c["claim"]) for c in claims] == [
        (m, k) for m in ("grad_var", "activation_rate") for k in keys
    ]
    assert all(c["status"] in VERDICTS for c in claims)
    assert all(f[m]["status"] in VERDICTS for f in summary["falls"].values() for m in ("grad_var", "activation_rate"))
    # The numbers are the studies': sgd's fall and gd − sgd, seed by seed, at the largest η.
    sgd = thermosgd.load(out / "runs" / "fig2-middle-online-sgd")
    gd = thermosgd.load(out / "runs" / "fig2-middle-online-gd")
    assert json.loads(gd.attrs["config"])["study"]["train"]["noise"] == "gd"
    change = lambda ds: (ds.grad_var.isel(step=-1) - ds.grad_var.isel(step=0)).sel(lr=ds.lr.max()).values.ravel()  # noqa: E731
    assert summary["falls"]["sgd"]["grad_var"]["change"] == pytest.approx(float(change(sgd).mean()))
    needs_noise = claims[0]
    assert needs_noise["difference"] == pytest.approx(float((change(gd) - change(sgd)).mean()))
    gaussian = claims[1]
    assert gaussian["margin"] == pytest.approx(0.2 * abs(gaussian["reference"]))
    # Shared initialization: every noise model starts from the same network per seed.
    np.testing.assert_array_equal(sgd.weight_norm.isel(step=0).values, gd.weight_norm.isel(step=0).values)
    report = (out / "report.md").read_text()
    assert "keeps 0.12 of SGD's noise variance" in report
    assert "## The mechanism's claims" in report and "| frozen | grad_var |" in report and "Smoke-test size" in report
    # The page: the claims are rows of the experiment's section.
    section = next(s for s in collect(out.parent).sections if s.experiment == "mechanism-deep")
    assert section.measured and len(section.claims) == len(claims)
