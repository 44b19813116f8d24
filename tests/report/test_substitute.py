"""Substitute data is said everywhere a result appears (issue 20 item 5): closing table, the page's
section and summary row, figure titles and file names, report.md and summary.json."""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from thermosgd import presets
from thermosgd.analysis.run_config import config_of, run_config
from thermosgd.report import collect, summary_table

CONFIG = {
    "kind": "deep",
    "preset": "fig11",
    "description": presets.get("fig11").description,
    "model": "two-layer",
    "dataset": "digits",
    "dataset_paper": "cifar10",
    "substitute": True,
    "over": "lr",
    "lrs": [0.01, 0.02, 0.04],
    "batch_sizes": [1000],
    "seeds": 4,
    "steps": 150,
    "figures": ["activation_rate"],
}


def _results(rise=0.12, seeds=4):
    """The activation rate rising from 0.51, as fig11 on digits does (issue 21)."""
    rng = np.random.default_rng(0)
    lrs, t = np.array([0.01, 0.02, 0.04]), np.arange(0, 151, 10)
    m = 0.51 + rise * (lrs / 0.04)[:, None, None, None] * (t / 150) + 0.005 * rng.standard_normal((3, 1, seeds, t.size))
    return xr.Dataset(
        {
            "activation_rate": (("lr", "batch_size", "seed", "step"), m),
            "diverged": (("lr", "batch_size", "seed"), np.zeros((3, 1, seeds), bool)),
        },
        coords={"lr": lrs, "batch_size": [1000], "seed": np.arange(seeds), "step": t},
        attrs={"config": json.dumps(CONFIG)},
    )


def test_the_paper_data_is_named_as_replaced_never_as_used():
    run = config_of(CONFIG)
    assert run.substitute and run.substitute_label == "substitute: digits"
    text = run.on_data("two-layer net with 300 hidden units on CIFAR-10, |B| = 1000")
    assert text == "two-layer net with 300 hidden units on digits (substitute for CIFAR-10), |B| = 1000"
    assert config_of({**CONFIG, "substitute": False, "dataset": "cifar10"}).on_data("on CIFAR-10") == "on CIFAR-10"


def test_summary_report_md_figures_and_page_say_substitute(tmp_path):
    from thermosgd.analysis.verdict import judge
    from thermosgd.reproduce.deep import draw_preset_figures
    from thermosgd.reproduce.twolayer import write_summary

    ds = _results()
    folder = tmp_path / "runs" / "fig11"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(CONFIG))
    ds.to_netcdf(folder / "results.nc")
    verdict = judge(ds, "fig11", "activation_rate", "lr", n_boot=50)
    assert verdict.status == "opposite"  # it rises; the claim says it falls
    write_summary(folder, presets.get("fig11"), ds, [verdict])
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["substitute"] == "digits" and summary["dataset_paper"] == "cifar10"
    assert "Substitute data: digits" in (folder / "report.md").read_text()
    files = draw_preset_figures(ds, folder / "figures")
    assert files and all("digits-substitute" in f.name for f in files)
    assert run_config(ds).substitute
    report = collect(tmp_path / "runs")
    (sec,) = [s for s in report.sections if s.experiment == "fig11"]
    assert sec.name == "fig11 (substitute: digits)" and "CIFAR-10" not in sec.title.replace(
        "substitute for CIFAR-10", ""
    )
    assert sec.claims[0].verdict == "opposite"
    assert "fig11 (substitute: digits)" in summary_table(report)


def test_summary_round_trips_and_a_renamed_field_is_said_not_silently_dropped(tmp_path):
    from thermosgd.analysis.summary import RunSummary, summarize
    from thermosgd.analysis.verdict import judge
    from thermosgd.errors import UsageError

    ds = _results()
    s = summarize(ds, "fig11", "fig11", "lr", [judge(ds, "fig11", "activation_rate", "lr", n_boot=20)])
    back = RunSummary.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s and back.substitute == "digits" and back.verdicts[0].status == "opposite"
    bad = s.to_dict()
    bad["verdict"] = bad.pop("verdicts")
    try:
        RunSummary.from_dict(bad)
    except UsageError as exc:
        assert "verdict" in str(exc)
    else:
        raise AssertionError("a renamed field was accepted")
    folder = tmp_path / "runs" / "fig11"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(CONFIG))
    (folder / "summary.json").write_text(json.dumps(bad))
    (sec,) = [x for x in collect(tmp_path / "runs").sections if x.experiment == "fig11"]
    assert any("summary.json could not be read" in n and "verdict" in n for n in sec.notes)
