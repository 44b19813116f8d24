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
