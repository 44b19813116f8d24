"""One way of writing numbers, for verdict lines, reports and the HTML page."""

import math

import pytest

from thermosgd import fmt


@pytest.mark.parametrize(
    "x, text",
    [
        (1.5206, "1.52"),
        (2, "2.00"),
        (-0.001, "0.00"),
        (-0.76, "-0.76"),
        (None, "n/a"),
        (math.nan, "n/a"),
        (math.inf, "n/a"),
        ("fast", "n/a"),
    ],
)
def test_exponent(x, text):
    assert fmt.exponent(x) == text


def test_interval_and_plus_minus():
    assert fmt.interval(1.0974, 3.8628) == "[1.10, 3.86]"
    assert fmt.interval(None, 2) == "[n/a, 2.00]"
    assert fmt.plus_minus(1.0747, 0.0504) == "1.07 ± 0.05"
    assert fmt.plus_minus(1.0747, None) == "1.07"


@pytest.mark.parametrize(
    "x, text", [(0.48811, "0.488"), (5.35e-06, "5.35e-06"), (1.2e18, "1.2e+18"), (2.0, "2"), (None, "n/a")]
)
def test_sig(x, text):
    assert fmt.sig(x) == text


def test_signed_and_percent():
    assert fmt.signed(0.02199) == "+0.022" and fmt.signed(-0.3428) == "-0.343"
    assert fmt.percent(0.875) == "88%" and fmt.percent(None) == "n/a"


def test_narrow_intervals_show_their_width_and_sign():
    """fig13 on digits fitted β = -0.0013 [-0.0042, 0.0016]: two decimals wrote "[0.00, 0.00]"."""
    assert fmt.interval(-0.004249, 0.001570) == "[-0.004, 0.002]"
    assert fmt.estimate(-0.001333, -0.004249, 0.001570) == "-0.001 [-0.004, 0.002]"
    assert fmt.estimate(0.9905, 0.9893, 0.9921) == "0.991 [0.989, 0.992]"
    assert fmt.estimate(1.9, 1.8, 2.0) == "1.90 [1.80, 2.00]"  # wide: the usual two decimals
    assert fmt.estimate(0.19, None, None) == "0.19 (no CI)"
    assert fmt.interval(1.0, 1.0) == "[1.00, 1.00]"  # a point interval stays a point
    assert fmt.interval(0.1, 0.1 + 1e-12) == "[0.100000, 0.100000]"  # at most six decimals


def test_a_verdict_line_shows_a_narrow_interval():
    from thermosgd.analysis.verdict import Verdict

    v = Verdict("fig13", "activation_rate", "batch_size", "opposite", 1.0, -0.001333, -0.004249, 0.001570)
    assert "fitted β = -0.001, 95% CI [-0.004, 0.002]" in v.line()
    assert v.fitted() == "β = -0.001 [-0.004, 0.002]"
