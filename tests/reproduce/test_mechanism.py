"""`reproduce mechanism` wiring at a tiny size: runs, files, numbers that match the runs."""

import dataclasses
import json

import numpy as np

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
    assert summary["gd_batch"] == 8 and len(summary["verdict"]) == 2
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
