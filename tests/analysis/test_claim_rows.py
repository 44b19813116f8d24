"""The one markdown row writer of the mechanism claims (two-layer and deep reports)."""

from thermosgd.analysis.mechanism import claim_rows

CLAIM = {
    "setting": "η",
    "metric": "grad_var",
    "statement": "gd falls less than sgd",
    "compared": "gd vs sgd",
    "over": "lr",
    "value": 0.2,
    "difference": -0.012345,
    "ci_low": -0.02,
    "ci_high": 0.0031,
    "margin": None,
    "seeds": 16,
    "status": "agrees",
    "reason": "the interval lies below 0",
}


def test_two_layer_rows_name_the_setting_and_the_swept_value():
    (row,) = claim_rows([CLAIM], "setting", lambda c: f"{c['over']} = {c['value']:g}", ".4f")
    assert row == (
        "| η | gd falls less than sgd | gd vs sgd | lr = 0.2 | -0.0123 [-0.0200, +0.0031] | — | 16 | "
        "**agrees** | the interval lies below 0 |"
    )


def test_deep_rows_name_the_metric_and_give_the_margin():
    (row,) = claim_rows([{**CLAIM, "margin": 0.00456}], "metric", lambda c: f"{c['value']:g}", ".3g")
    assert row == (
        "| grad_var | gd falls less than sgd | gd vs sgd | 0.2 | -0.0123 [-0.02, +0.0031] | ±0.00456 | 16 | "
        "**agrees** | the interval lies below 0 |"
    )
