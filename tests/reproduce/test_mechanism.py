"""`reproduce mechanism` wiring at a tiny size: runs, files, numbers that match the runs."""

import dataclasses
import json

import numpy as np
import pytest

import thermosgd
from thermosgd import presets
from thermosgd.reproduce.mechanism import reproduce_mechanism


def test_mechanism_tiny(tmp_path):
    tiny = dataclasses.replace(
        presets.get("mechanism"),
        quick={
            "seeds": 2,
            "steps": 20,
            "gd_batch": 8,
            "settings": ["fig3"],
            "noises": ["sgd", "frozen"],
            "batch_noises": ["gaussian"],
        },
    )
    verdicts = reproduce_mechanism(tiny, tmp_path, quick=True, progress=False, n_boot=20)
    assert [v.preset for v in verdicts] == ["mechanism/fig3-sgd", "mechanism/fig3-frozen", "mechanism/fig5-gaussian"]
    for stem in ("mechanism_fig3", "mechanism_fig5"):
        assert (tmp_path / "figures" / f"{stem}.png").stat().st_size > 1000
    summary = json.loads((tmp_path / "mechanism.json").read_text())
    assert summary["gd_batch"] == 8 and len(summary["verdict"]) == 2 + len(summary["claims"])
    ds = thermosgd.load(tmp_path / "runs" / "fig3-frozen")
    assert json.loads(ds.attrs["config"])["train"]["noise"] == "frozen"
    row = summary["results"]["fig3"]["noise_models"]["frozen"]["rows"][-1]
    np.testing.assert_allclose(
        row["activation_rate"]["end"], float(ds.activation_rate.sel(lr=0.1).isel(step=-1).mean())
    )
    # Shared initialization: every noise model starts from the same state.
    sgd = thermosgd.load(tmp_path / "runs" / "fig3-sgd")
    np.testing.assert_array_equal(sgd.v_norm.isel(step=0).values, ds.v_norm.isel(step=0).values)
    report = (tmp_path / "report.md").read_text()
    assert "| fig3 | frozen |" in report and "Smoke-test size" in report
    assert set(summary["collapse"]) == {"fig3-sgd", "fig3-frozen", "fig5-gaussian"}
    # The HTML report recognises the folder.
    from thermosgd.report import collect

    assert [s.experiment for s in collect(tmp_path).sections] == ["mechanism"]


def test_mechanism_claims_svag_and_finite_set_tiny(tmp_path):
    every_noise = {"noises": ["sgd", "gd", "gaussian", "frozen"], "batch_noises": [], "svag": 2}
    finite = {"setting": "fig3", "train_size": 16, "samplings": ["iid", "reshuffle"]}
    quick = {"seeds": 4, "steps": 20, "gd_batch": 8, "settings": ["fig3"], "finite": finite, **every_noise}
    tiny = dataclasses.replace(presets.get("mechanism"), quick=quick)
    reproduce_mechanism(tiny, tmp_path, quick=True, progress=False, n_boot=20, margin=0.2)
    summary = json.loads((tmp_path / "mechanism.json").read_text())
    claims = {c["claim"]: c for c in summary["claims"]}
    assert list(claims) == ["needs_noise", "second_moments_suffice", "needs_theta_dependence", "survives_sde_limit"]
    svag = thermosgd.load(tmp_path / "runs" / "fig3-sgd-svag2")
    assert json.loads(svag.attrs["config"])["train"]["svag"] == 2
    sgd = thermosgd.load(tmp_path / "runs" / "fig3-sgd")
    end = lambda ds: ds.activation_rate.sel(lr=0.1).isel(batch_size=0, step=-1).values  # noqa: E731
    assert claims["survives_sde_limit"]["difference"] == pytest.approx(float((end(svag) - end(sgd)).mean()))
    gaussian = claims["second_moments_suffice"]
    assert gaussian["margin"] == pytest.approx(0.2 * abs(gaussian["reference"]))
    shuffled = thermosgd.load(tmp_path / "runs" / "fig3-n16-reshuffle")
    assert json.loads(shuffled.attrs["config"])["train"]["sampling"] == "reshuffle"
    assert summary["sampling"]["reshuffle_minus_iid"]["seeds"] == 4
    report = (tmp_path / "report.md").read_text()
    assert "## The mechanism's claims" in report and "iid vs reshuffle" in report


def test_sde_limit_tiny(tmp_path):
    tiny = dataclasses.replace(
        presets.get("sde-limit"), quick={"seeds": 2, "steps": 20, "svag": [1, 2], "settings": ["fig3"]}
    )
    reproduce_mechanism(tiny, tmp_path, quick=True, progress=False)
    summary = json.loads((tmp_path / "sde-limit.json").read_text())
    rows = summary["results"]["fig3"]
    assert [r["value"] for r in rows] == [0.025, 0.05, 0.075, 0.1]
    ds = thermosgd.load(tmp_path / "runs" / "fig3-l2")
    assert list(ds.step.values) == list(thermosgd.load(tmp_path / "runs" / "fig3-l1").step.values)
    np.testing.assert_allclose(rows[-1]["by_l"]["2"]["end"], float(ds.activation_rate.sel(lr=0.1).isel(step=-1).mean()))
    assert rows[-1]["versus"]["status"] == "inconclusive"  # 2 seeds: no verdict
    assert (tmp_path / "figures" / "sde_limit_fig3.png").stat().st_size > 1000
    assert "| 0.1 |" in (tmp_path / "report.md").read_text()


def test_decomposition_tiny(tmp_path):
    reproduce_mechanism(presets.get("decomposition"), tmp_path, quick=True, progress=False)
    summary = json.loads((tmp_path / "decomposition.json").read_text())
    assert summary["settings"]["anchors"] == [0, 10, 50] and summary["settings"]["states"] == 4
    assert {r["noise"] for r in summary["parts"]} == {"sgd", "gd", "gaussian", "frozen", "frozen_cov"}
    assert (tmp_path / "decomposition.nc").exists()
    assert "## Shares of SGD's noise-induced part" in (tmp_path / "report.md").read_text()


def test_the_new_experiments_state_their_verdicts_in_words_for_the_page(tmp_path):
    reproduce_mechanism(presets.get("decomposition"), tmp_path / "d", quick=True, progress=False)
    lines = json.loads((tmp_path / "d" / "decomposition.json").read_text())["verdict"]
    assert len(lines) == 3 and all(line.startswith("activation rate, 10 steps from step") for line in lines)
    tiny = dataclasses.replace(
        presets.get("sde-limit"), quick={"seeds": 2, "steps": 20, "svag": [1, 2], "settings": ["fig7"]}
    )
    reproduce_mechanism(tiny, tmp_path / "s", quick=True, progress=False)
    lines = json.loads((tmp_path / "s" / "sde-limit.json").read_text())["verdict"]
    assert len(lines) == 4 and lines[0].startswith("fig7, η = 0.025: l = 2 vs l = 1: inconclusive")


def test_decomposition_refuses_one_seed_in_one_line(tmp_path):
    from thermosgd.errors import UsageError

    with pytest.raises(UsageError, match="seeds must be at least 2 for decomposition"):
        reproduce_mechanism(presets.get("decomposition"), tmp_path, seeds=1, quick=True, progress=False)
