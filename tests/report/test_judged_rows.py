"""The mechanism's claims and the SDE limit's comparisons stand in the summary as rows of their own."""

from thermosgd.report.readers import _judged_rows


def _claim(**kw):
    base = {
        "claim": "second_moments_suffice",
        "statement": "second moments suffice",
        "setting": "fig3",
        "compared": "gaussian − sgd",
        "rule": "equivalence",
        "difference": 0.0024,
        "ci_low": -0.007,
        "ci_high": 0.012,
        "status": "agrees",
        "reason": "the CI lies within the margin",
    }
    return {**base, **kw}


def test_mechanism_claims_become_rows_with_the_word_analysis_gave():
    rows = _judged_rows({"preset": "mechanism", "claims": [_claim(), _claim(rule="difference", status="disagrees")]})
    assert [r.verdict for r in rows] == ["agrees", "disagrees"]
    assert rows[0].label == "fig3: second moments suffice"
    assert rows[0].paper == "gaussian − sgd: |diff| ≤ margin" and rows[1].paper == "gaussian − sgd: CI > 0"
    assert rows[0].measured == "+0.0024 [-0.007, 0.012]"


def test_an_unknown_word_is_not_measured_never_passed_through():
    (row,) = _judged_rows({"claims": [_claim(status="consistent")]})
    assert row.verdict == "not measured"


def test_sde_limit_rows_per_setting_and_eta():
    versus = {"value": 0.1, "l": 8, "difference": -0.0008, "ci_low": -0.012, "ci_high": 0.011, "status": "agrees"}
    data = {"preset": "sde-limit", "results": {"fig3": [{"value": 0.1, "versus": versus}, {"value": 0.05}]}}
    (row,) = _judged_rows(data)
    assert row.label == "fig3, η = 0.1: activation-rate fall, l = 8 vs l = 1" and row.verdict == "agrees"
    assert _judged_rows({**data, "preset": "mechanism"}) == []  # only the SDE limit's results are comparisons
