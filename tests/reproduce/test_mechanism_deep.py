"""`reproduce mechanism-deep` end to end at its quick size: studies per noise model, falls, claims, the page."""

import json

import numpy as np
import pytest

import thermosgd
from thermosgd import presets
from thermosgd.analysis.verdict import VERDICTS
from thermosgd.report import collect
from thermosgd.reproduce import reproduce

NOISES = ["sgd", "gd", "gaussian", "frozen"]


def test_mechanism_deep_is_its_own_command():
    p = presets.get("mechanism-deep")
    assert p.kind == "mechanism" and not p.in_default_set
    assert "mechanism-deep" not in {q.name for q in presets.default_set()}


def test_mechanism_deep_quick(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    reproduce(["mechanism-deep"], quick=True, progress=False, margin=0.2)
    out = tmp_path / "runs-quick" / "mechanism-deep"
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(f"fig2-middle-online-{n}" for n in NOISES)
    summary = json.loads((out / "mechanism-deep.json").read_text())
    assert summary["margin"] == 0.2 and summary["settings"]["batch_size"] == [1]
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
    assert "## The mechanism's claims" in report and "| frozen | grad_var |" in report and "Smoke-test size" in report
    # The page: the claims are rows of the experiment's section.
    section = next(s for s in collect(out.parent).sections if s.experiment == "mechanism-deep")
    assert section.measured and len(section.claims) == len(claims)
