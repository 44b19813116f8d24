"""The walk's fits against their obviously-right twins (exact power laws, a weighted polyfit)."""

import math

import numpy as np
import pytest
import torch

from thermosgd.analysis.walk_fits import flux_comparison, flux_exponent


@pytest.mark.parametrize("p", [1.0, 2.0, 2.5])
def test_flux_exponent_is_exact_on_a_power_law(p):
    etas = np.array([0.05, 0.1, 0.2, 0.4])
    means = -3.0 * etas**p  # the sign of the flux does not matter
    slope, se = flux_exponent(etas, means, 0.01 * np.abs(means))
    x = np.log(etas)  # relative errors 0.01 are errors 0.01 of log|J|: se = 0.01 / sqrt(sum (x - mean x)^2)
    assert slope == pytest.approx(p, abs=1e-12)
    assert se == pytest.approx(0.01 / math.sqrt(((x - x.mean()) ** 2).sum()), rel=1e-12)


def test_flux_exponent_matches_a_weighted_polyfit():
    rng = np.random.default_rng(4)
    etas = np.array([0.05, 0.1, 0.2, 0.4, 0.8])
    means = etas**2 * np.exp(rng.normal(0, 0.05, etas.size))
    stderrs = means * rng.uniform(0.02, 0.1, etas.size)
    slope, _ = flux_exponent(etas, means, stderrs)
    twin = np.polyfit(np.log(etas), np.log(means), 1, w=means / stderrs)[0]  # weights 1/σ of log(mean)
    assert slope == pytest.approx(twin, rel=1e-10)


def test_flux_exponent_is_undefined_with_a_zero_count():
    assert all(math.isnan(v) for v in flux_exponent([0.1, 0.2], [0.0, 1e-3], [1e-4, 1e-4]))


def test_flux_comparison_ratios_and_their_errors():
    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    row = flux_comparison(t(-0.1, 0.1), t(2.0, 4.0), t(0.1, 0.1), 3.0, 0.3, t(1.0, 2.0), t(-4.0, -2.0))
    assert row["mean_eq10"] == 1.5 and row["ratio_eq10"] == 2.0 and row["ratio_eq10_stderr"] == pytest.approx(0.2)
    assert row["ratio_fokker_planck"] == pytest.approx(-1.0) and row["ratio_fokker_planck_stderr"] == pytest.approx(0.1)
    zero = flux_comparison(t(0.0), t(1.0), t(0.1), 1.0, 0.1, t(0.0), t(1.0))
    assert math.isnan(zero["ratio_eq10"]) and math.isnan(zero["ratio_eq10_stderr"])
