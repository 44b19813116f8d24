"""Measurements of the comparison suite against exactly solvable one-step fluxes,
the exponent fit against exact samples, and the quick reproduction end to end.

Statistical checks use fixed seeds and 5-standard-error tolerances unless stated.
"""

import json
import math

import pytest
import torch

from thermosgd.analysis.walk_fits import fit_stationary_exponent
from thermosgd.reproduce.walk import reproduce_walk
from thermosgd.walk import CASES, WalkResult, parse_g
from thermosgd.walk.compare import measure_plane_flux

F64 = torch.float64


@pytest.mark.parametrize("slope", [0.0, 0.4])
def test_one_step_flux_for_linear_g_is_exact(slope):
    # g = 1 + a q, binary zeta: mass within Delta-(x) = eta g(x) / (1 + eta a) left of x
    # moves right with probability 1/2, within Delta+(x) = eta g(x) / (1 - eta a) right
    # of x moves left. For rho = rho0 (1 + slope q) on [-1, 1] this gives exactly
    # J(x) = rho0/2 [(Delta- - Delta+)(1 + slope x) - slope (Delta-^2 + Delta+^2) / 2].
    a, eta, half = 0.5, 0.3, 1.0
    g = parse_g(f"1 + {a}*q")
    offsets = torch.tensor([-0.5, 0.0, 0.5], dtype=F64)
    point, normal = torch.zeros(1, dtype=F64), torch.ones(1, dtype=F64)
    m = measure_plane_flux(
        g, point, normal, offsets, eta=eta, particles=400_000, half=half, slope=slope, seed=3, chunk=200_000
    )
    gx = 1 + a * offsets
    dp, dm = eta * gx / (1 - eta * a), eta * gx / (1 + eta * a)
    rho0 = 1 / (2 * half)
    exact = rho0 / 2 * ((dm - dp) * (1 + slope * offsets) - slope * (dm**2 + dp**2) / 2)
    assert torch.all((m["flux"] - exact).abs() <= 5 * m["stderr"])
    assert abs(float(m["mean"] - exact.mean())) <= 5 * float(m["mean_stderr"])


def test_exponent_fit_recovers_k_from_exact_samples():
    # Snapshots drawn exactly from rho ∝ g^-1.5 (inverse CDF on a fine grid).
    g = parse_g("1 + 0.5*q")
    lo, hi, k = 0.0, 4.0, 1.5
    grid = torch.linspace(lo, hi, 20_001, dtype=F64)
    cdf = torch.cumsum((1 + 0.5 * grid) ** -k, 0)
    cdf = (cdf - cdf[0]) / (cdf[-1] - cdf[0])
    gen = torch.Generator().manual_seed(4)
    u = torch.rand(5, 20_000, generator=gen, dtype=F64)
    samples = grid[torch.searchsorted(cdf, u).clamp(max=grid.numel() - 1)]
    res = WalkResult(
        q=samples[-1][:, None],
        eta=0.2,
        record_steps=torch.arange(5),
        snapshots=samples[..., None],
        mean_displacement=torch.zeros(1, 1),
        msd=torch.zeros(1, 1),
        crossings=torch.zeros(0, 0, 2, dtype=torch.long),
    )
    fit = fit_stationary_exponent(res, g, lo, hi, since=0)
    assert abs(fit["k_fit"] - k) <= max(5 * fit["k_stderr"], 0.02)
    assert fit["k_eq10"] == pytest.approx(1.0, rel=1e-6)
    assert fit["k_fokker_planck"] == pytest.approx(2.0, rel=1e-6)


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("walk")
    return out, reproduce_walk(out, quick=True)


def test_reproduce_writes_report_and_figures(quick_report):
    out, suite = quick_report
    for name in ("walk_density", "walk_flux", "walk_stationary", "walk_eta_scaling"):
        for ext in ("png", "pdf"):
            assert (out / "figures" / f"{name}.{ext}").stat().st_size > 1000
    data = json.loads((out / "walk_report.json").read_text())
    assert [c["name"] for c in data["cases"]] == [c.name for c in CASES]
    md = (out / "walk_report.md").read_text()
    assert "| 1d-linear |" in md and "Where they disagree" in md


def test_reported_numbers_are_consistent(quick_report):
    # Loose physics checks on the quick run (seed 0); each bound is > 5 standard errors away.
    _, suite = quick_report
    by = {c["name"]: c for c in suite["cases"]}
    for name in ("1d-linear", "1d-nonlinear"):
        c = by[name]
        assert c["thermophoretic"]["main"]["ratio_fokker_planck"] == pytest.approx(1, abs=0.3)
        assert c["diffusive"]["ratio_fokker_planck"] == pytest.approx(1, abs=0.3)
        assert c["stationary"]["k_eq10"] == pytest.approx(1.0, rel=1e-6)
        assert c["stationary"]["k_fit"] == pytest.approx(2.0, abs=0.25)
        assert c["thermophoretic"]["exponent"] == pytest.approx(2.0, abs=0.5)
    two = by["2d-shared"]
    assert two["stationary"] is None and "no single k" in two["stationary_note"]
    assert two["thermophoretic"]["main"]["ratio_fokker_planck"] == pytest.approx(1, abs=0.3)
    assert math.isfinite(two["thermophoretic"]["exponent"])
