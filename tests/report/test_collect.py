"""Reading run folders into section records: order, verdicts, tolerance to missing or new fields."""

from __future__ import annotations

import json
import shutil

import numpy as np

from thermosgd.report import collect, summary_table
from thermosgd.report.catalogue import experiments
from thermosgd.report.curves import collapse_data
from thermosgd.report.provenance import markdown_tables
from thermosgd.report.verdicts import fit_claim, judged_fit


def _claims(report, name):
    (sec,) = [s for s in report.sections if s.name == name]
    return sec.claims


def test_every_experiment_of_the_paper_in_table_order(fake_runs):
    report = collect(fake_runs)
    expected = [e.name for e in experiments() if not e.optional]
    assert [s.name for s in report.sections] == expected
    measured = {s.name for s in report.sections if s.measured}
    assert measured == {"walk", "fig3", "fig5", "fig2-middle", "drift", "equal-error"}
    # Not run: every claim "not measured", with the command that runs it.
    fig11 = next(s for s in report.sections if s.name == "fig11")
    assert {c.verdict for c in fig11.claims} == {"not measured"}
    assert "CIFAR-10" in fig11.claims[0].note and fig11.command.startswith("thermosgd reproduce fig11")


def test_twolayer_verdicts_from_the_fits(fake_runs):
    report = collect(fake_runs)
    fig3 = _claims(report, "fig3")
    assert [c.verdict for c in fig3] == ["agrees", "disagrees"]
    assert fig3[0].measured == "α = 1.95 [1.70, 2.20]" and fig3[0].paper == "α = 2"
    assert "outside the 95% CI (by 1.5)" in fig3[1].note
    fig5 = _claims(report, "fig5")
    assert [c.verdict for c in fig5] == ["inconclusive", "not measured"]
    assert "search bound" in fig5[0].note and fig5[0].left_out == "3 replicas left out"


def test_left_out_replicas_per_value_are_stated():
    fit = {"exponent": 1.99, "ci_low": 1.96, "ci_high": 2.03, "predicted": 2.0, "bounds": [-2, 5]}
    verdict = {
        "preset": "fig3",
        "over": "lr",
        "metric": "activation_rate",
        "status": "agrees",
        "paper": 2.0,
        "exponent": 1.99,
        "ci_low": 1.96,
        "ci_high": 2.03,
        "fit": fit,
        "included_diverged": False,
        "left_out": [
            {
                "value": 0.1,
                "count": 8,
                "of": 8,
                "first_step": 850,
                "median_step": 900,
                "reason": "loss > 10× initial",
                "step_size_load": 10.0,
            }
        ],
    }
    claim = fit_claim("activation rate", None, "lr", {"diverged": 8}, verdict)
    assert claim.verdict == "agrees" and claim.measured == "α = 1.99 [1.96, 2.03]"
    assert "η = 0.1: 8/8 from step ~900 (loss > 10× initial, η·E‖x‖² ≈ 10)" in claim.note
    assert claim.left_out == "8 replicas left out"
    # Without a verdict record: the run's count of diverged replicas.
    assert fit_claim("activation rate", fit, "lr", {"diverged": 3}).left_out == "3 replicas left out"
    # A verdict that left nothing out says nothing, whatever the old count.
    assert fit_claim("a", None, "lr", {"diverged": 3}, {**verdict, "left_out": []}).left_out == ""
    # Not measured: the verdict's own reason.
    none = fit_claim(
        "a",
        None,
        "lr",
        {},
        {
            "preset": "p",
            "over": "lr",
            "metric": "a",
            "status": "not measured",
            "paper": 2.0,
            "note": "needs ≥ 2 swept values of lr and ≥ 2 seeds",
        },
    )
    assert none.verdict == "not measured" and "needs ≥ 2 swept values" in none.note


def test_walk_claims_pool_the_cases(fake_runs):
    claims = {c.label: c for c in _claims(collect(fake_runs), "walk")}
    assert claims["thermophoretic flux, measured / Eq. 10"].verdict == "agrees"  # 1.01 ± 0.02 vs 1
    assert claims["η exponent of the thermophoretic flux"].verdict == "agrees"  # 2.01 ± 0.03 vs 2
    assert claims["diffusive flux, measured / Eq. 10"].verdict == "disagrees"  # 0.50 ± 0.02 vs 1
    assert claims["stationary density ρ ∝ g^(−k): k"].measured == "1d-linear 2.00 ± 0.02"


def test_analysis_claims(fake_runs):
    report = collect(fake_runs)
    drift = {c.label: c.verdict for c in _claims(report, "drift")}
    assert drift["drift of b (early window): η exponent α"] == "agrees"  # [1.8, 2.4] holds 2
    assert drift["drift of b (early window): |B| exponent β"] == "disagrees"  # [0.1, 0.7] misses 1
    assert drift["drift of b (early window): direction"] == "agrees"
    assert drift["drift of V², mean-shift part (early window): η exponent α"] == "not measured"
    eq = [c.verdict for c in _claims(report, "equal-error")]
    assert eq == ["agrees", "opposite"]  # +0.03 ± 0.01; -0.3 ± 0.1 is below 0 by 3 s.e.


def test_collapse_data_is_the_seed_mean_and_standard_error():
    rng = np.random.default_rng(3)
    raw = rng.normal(size=(2, 5, 7))
    alive = np.ones((2, 5), bool)
    alive[1, [0, 3]] = False
    steps = np.arange(7) * 10.0
    d = collapse_data(
        np.array([0.05, 0.1]),
        steps,
        raw,
        alive,
        over="lr",
        metric="v_norm",
        reference=0.05,
        fit={"exponent": 1.5, "ci_low": 1.0, "ci_high": 2.0, "predicted": 2.0},
    )
    for k, curve in enumerate(d["curves"]):
        live = [raw[k, s] for s in range(5) if alive[k, s]]  # the replicas that count, one by one
        n = len(live)
        mean = [sum(x[i] for x in live) / n for i in range(7)]
        sd = [(sum((x[i] - mean[i]) ** 2 for x in live) / (n - 1)) ** 0.5 for i in range(7)]
        assert curve["replicas"] == n
        np.testing.assert_allclose(curve["mean"], mean, rtol=1e-4, atol=1e-9)
        np.testing.assert_allclose(curve["hi"], [m + s / n**0.5 for m, s in zip(mean, sd)], rtol=1e-4, atol=1e-9)
        np.testing.assert_allclose(curve["lo"], [m - s / n**0.5 for m, s in zip(mean, sd)], rtol=1e-4, atol=1e-9)
    assert d["fitted"] == 1.5 and d["paper"] == 2.0 and d["sign"] == 1.0 and d["span"] == [0.0, 60.0]


def test_long_curves_are_thinned_for_both_axis_scales():
    steps = np.arange(20001.0)
    raw = np.zeros((2, 2, steps.size))
    d = collapse_data(
        np.array([1.0, 2.0]),
        steps,
        raw,
        np.ones((2, 2), bool),
        over="batch_size",
        metric="activation_rate",
        reference=1.0,
        fit=None,
    )
    t = d["curves"][0]["t"]
    assert len(t) <= 300 and t[0] == 0 and t[-1] == 20000
    assert t[1] <= 2  # early steps kept for the log axis
    assert max(np.diff(t)) < 20000 / 100  # no big gap late for the linear axis
    assert d["fitted"] is None and d["paper"] == 1.0 and d["sign"] == -1.0


def test_missing_and_broken_files_read_as_not_measured(fake_runs):
    (fake_runs / "fig3" / "summary.json").unlink()
    (fake_runs / "fig5" / "summary.json").write_text('{"collapse": {"activation_rate": {"exponent": 1.9}}, "new": 1}')
    (fake_runs / "walk" / "walk_report.json").write_text('{"cases": [{"name": "x"}]}')
    (fake_runs / "equal-error" / "equal_error.json").write_text("{ not json")
    (fake_runs / "drift" / "drift.json").write_text('{"fits": {"b_early": {"alpha": "fast"}}}')
    (fake_runs / "junk").mkdir()
    report = collect(fake_runs)
    by = {s.name: s for s in report.sections}
    assert {c.verdict for c in by["fig3"].claims} == {"not measured"}
    assert any("summary.json is missing" in n for n in by["fig3"].notes)
    assert by["fig3"].collapses  # the curves are still there
    assert by["fig5"].claims[0].verdict == "not measured" and "no confidence interval" in by["fig5"].claims[0].note
    assert {c.verdict for c in by["walk"].claims} == {"not measured"}
    assert {c.verdict for c in by["equal-error"].claims} == {"not measured"}
    assert {c.verdict for c in by["drift"].claims} == {"not measured"}
    assert report.unrecognized == ["junk"]
    assert "not measured" in summary_table(report)


def test_mechanism_section_only_when_present(fake_runs):
    assert "mechanism" not in [s.name for s in collect(fake_runs).sections]
    mech = fake_runs / "mechanism"
    mech.mkdir()
    (mech / "mechanism.json").write_text(
        json.dumps({"verdict": "sgd and gaussian noise reproduce the decrease; gd and frozen do not"})
    )
    report = collect(fake_runs)
    sec = next(s for s in report.sections if s.name == "mechanism")
    assert report.sections[-1] is sec and "gd and frozen do not" in sec.notes[0]


def test_folders_found_by_content_not_only_by_name(fake_runs):
    shutil.copytree(fake_runs / "fig3", fake_runs / "gauss-big")  # a second fig3 run under another name
    report = collect(fake_runs)
    assert [s.folder.rsplit("/", 1)[-1] for s in report.sections if s.name == "fig3"] == ["fig3", "gauss-big"]
    assert len({s.id for s in report.sections}) == len(report.sections)


def test_one_result_folder_is_a_report_of_its_own(fake_runs):
    report = collect(fake_runs / "fig5")
    assert [s.name for s in report.sections] == ["fig5"]


def test_markdown_tables():
    text = "# T\n\n### One\n\n| a | b \\| c |\n|---|---|\n| 1 | **2** |\n| 3 | `x` |\n\ntext\n"
    (t,) = markdown_tables(text, source="r.md")
    assert t.caption == "One (r.md)" and t.header == ["a", "b | c"] and t.rows == [["1", "2"], ["3", "x"]]


def test_summary_table_one_line_per_claim(fake_runs):
    report = collect(fake_runs)
    lines = summary_table(report).splitlines()
    measured = sum(len(s.claims) for s in report.sections if s.measured)
    not_run = sum(1 for s in report.sections if not s.measured)
    assert len(lines) == 2 + measured + not_run
    assert lines[0].split() == ["experiment", "what", "is", "compared", "paper", "measured", "verdict"]


def test_walk_dimensions_judged_apart(fake_runs):
    path = fake_runs / "walk" / "walk_report.json"
    rep = json.loads(path.read_text())
    two = json.loads(json.dumps(rep["cases"][0]))
    two.update(name="2d-shared", dim=2, stationary=None)
    two["thermophoretic"]["main"].update(ratio_eq10=1.5, ratio_eq10_stderr=0.05)
    rep["cases"].append(two)
    path.write_text(json.dumps(rep))
    claims = {c.label: c.verdict for c in _claims(collect(fake_runs), "walk")}
    assert claims["thermophoretic flux, measured / Eq. 10 (1-D)"] == "agrees"
    assert claims["thermophoretic flux, measured / Eq. 10 (2-D)"] == "disagrees"
    assert "stationary density ρ ∝ g^(−k): k (1-D)" in claims and "stationary density ρ ∝ g^(−k): k (2-D)" not in claims


def test_a_verdict_without_interval_shows_none_even_if_its_fit_recorded_one():
    fit = {
        "metric": "a",
        "over": "lr",
        "exponent": 0.1854,
        "ci_low": 0.1745,
        "ci_high": 0.1745,
        "ci_level": 0.95,
        "predicted": 2.0,
        "bounds": [-2.0, 5.0],
    }
    verdict = {
        "preset": "p",
        "over": "lr",
        "metric": "a",
        "status": "inconclusive",
        "paper": 2.0,
        "exponent": 0.1854,
        "ci_low": None,
        "ci_high": None,
        "note": "only 2 seeds: a bootstrap over seeds needs ≥ 4 for an interval",
        "fit": fit,
        "left_out": [],
    }
    claim = fit_claim("gradient variance", fit, "lr", {}, verdict)
    assert claim.measured == "α = 0.19 (no CI)" and claim.verdict == "inconclusive"
    assert "only 2 seeds" in claim.note
    shown = judged_fit(fit, verdict)  # what the interactive collapse shades
    assert shown["ci_low"] is None and shown["ci_high"] is None and shown["exponent"] == fit["exponent"]
    assert judged_fit(fit, {"status": "agrees"}) == fit and fit["ci_low"] == 0.1745  # no verdict interval: the fit's
