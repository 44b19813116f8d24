"""Eq. 9-11, 34-35 and the Fokker-Planck twin against hand-written formulas and brute force."""

import math

import pytest
import torch

from thermosgd.errors import UsageError
from thermosgd.walk import parse_g, theory

F64 = torch.float64
Q1 = torch.linspace(-1.0, 1.0, 7, dtype=F64)[:, None]
G1 = {
    "linear": ("1 + 0.5*q", lambda q: 1 + 0.5 * q, lambda q: 0.5 + 0 * q),
    "sin": ("1 + 0.5*sin(q)", lambda q: 1 + 0.5 * torch.sin(q), lambda q: 0.5 * torch.cos(q)),
}


def test_jacobian_matches_finite_differences():
    g = parse_g("(exp(0.5*q[0]) + q[1]**2, 1 + sin(q[0]*q[1]))", 2)
    q = torch.tensor([[0.3, -0.7], [1.1, 0.4]], dtype=F64)
    _, jac = theory.jacobian(g, q)
    h = 1e-6
    for j in range(2):
        e = torch.zeros(2, dtype=F64)
        e[j] = h
        fd = (g(q + e) - g(q - e)) / (2 * h)
        torch.testing.assert_close(jac[:, :, j], fd, rtol=1e-6, atol=1e-8)


def _deltas(g, q, eta, iters=200):
    """Brute force: solve Delta+ = eta g(q + Delta+), Delta- = eta g(q - Delta-) by fixed point."""
    dp = eta * g(q)
    dm = eta * g(q)
    for _ in range(iters):
        dp = eta * g(q + dp)
        dm = eta * g(q - dm)
    return dp, dm


@pytest.mark.parametrize(
    "text, dim", [("1 + 0.5*q", 1), ("1 + 0.5*sin(q)", 1), ("(exp(0.5*q[0]), 1 + 0.3*q[0] + 0.2*q[1])", 2)]
)
def test_eq9_matches_the_implicit_definition(text, dim):
    g = parse_g(text, dim)
    q = torch.full((3, dim), 0.2, dtype=F64) + torch.arange(3, dtype=F64)[:, None] * 0.3
    for eta in (1e-2, 1e-3):
        dp, dm = _deltas(g, q, eta)
        pred = theory.delta_difference(g, q, eta)
        # Eq. 9 holds to O(eta^3): the relative error shrinks like eta.
        torch.testing.assert_close(dp - dm, pred, rtol=20 * eta, atol=0)


@pytest.mark.parametrize("name", list(G1))
def test_eq10_in_one_dimension(name):
    text, gf, dgf = G1[name]
    g, eta = parse_g(text), 0.1
    rho = torch.rand(7, dtype=F64) + 0.5
    drho = torch.randn(7, 1, dtype=F64)
    f = theory.flux(g, Q1, rho, drho, eta)
    gv, dg = gf(Q1[:, 0]), dgf(Q1[:, 0])
    torch.testing.assert_close(f.diffusion, -(eta**2) * gv**2 * drho[:, 0])
    torch.testing.assert_close(f.thermophoretic, -(eta**2) * gv * dg * rho)
    torch.testing.assert_close(f.total, f.diffusion + f.thermophoretic)


def test_eq10_in_two_dimensions_by_hand():
    g = parse_g("(1 + 0.5*q[0], 1 + 0.5*q[1])", 2)
    q = torch.tensor([[0.0, 0.0], [0.4, -0.2]], dtype=F64)
    rho = torch.tensor([1.0, 2.0], dtype=F64)
    grad = torch.tensor([[0.3, -0.1], [0.0, 0.5]], dtype=F64)
    eta = 0.2
    f = theory.flux(g, q, rho, grad, eta)
    g0, g1 = 1 + 0.5 * q[:, 0], 1 + 0.5 * q[:, 1]
    norm = torch.sqrt(g0**2 + g1**2)
    s = g0 * g0 * 0.5 + g1 * g1 * 0.5  # sum_ij g_i g_j d_j g_i with a diagonal Jacobian
    torch.testing.assert_close(f.diffusion, -(eta**2) * norm * (g0 * grad[:, 0] + g1 * grad[:, 1]))
    torch.testing.assert_close(f.thermophoretic, -(eta**2) * s / norm * rho)
    # U = {0}: back to the 1-D form in coordinate 0.
    f0 = theory.flux(g, q, rho, grad, eta, U=[0])
    torch.testing.assert_close(f0.thermophoretic, -(eta**2) * g0 * 0.5 * rho)


def test_eq11_is_half_the_thermophoretic_term_and_eq34_has_the_opposite_sign():
    g, eta = parse_g("1 + 0.5*sin(q)"), 0.1
    c11 = theory.soret_coefficient(g, Q1, eta)
    thermo = theory.flux(g, Q1, torch.ones(7, dtype=F64), torch.zeros(7, 1, dtype=F64), eta).thermophoretic
    torch.testing.assert_close(2 * c11, thermo)  # the factor 1/2 of Eq. 11, as printed
    c34 = theory.soret_coefficient_1d(g, Q1, eta)
    torch.testing.assert_close(c34, -c11)  # Eq. 34 as printed: + eta^2 g g' / 2
    assert torch.all(c11[torch.cos(Q1[:, 0]) > 0] <= 0)  # Eq. 12 where d g >= 0


def test_eq35_temperature_derivative_is_eq34():
    g, eta = parse_g("1 + 0.5*sin(q)"), 0.3
    q = Q1.clone().requires_grad_(True)
    t = theory.effective_temperature(g, q, eta)
    # derivative by finite differences of the returned temperature
    h = 1e-6
    fd = (theory.effective_temperature(g, Q1 + h, eta) - theory.effective_temperature(g, Q1 - h, eta))[:, 0] / (2 * h)
    torch.testing.assert_close(fd, theory.soret_coefficient_1d(g, Q1, eta), rtol=1e-6, atol=1e-9)
    assert t.shape == (7, 1)


@pytest.mark.parametrize("name", list(G1))
def test_fokker_planck_flux_is_minus_half_eta2_derivative_of_g2_rho(name):
    text, gf, dgf = G1[name]
    g, eta = parse_g(text), 0.2
    rho = torch.rand(7, dtype=F64) + 0.5
    drho = torch.randn(7, 1, dtype=F64)
    f = theory.flux_fokker_planck(g, Q1, rho, drho, eta)
    gv, dg = gf(Q1[:, 0]), dgf(Q1[:, 0])
    total = -0.5 * eta**2 * (2 * gv * dg * rho + gv**2 * drho[:, 0])
    torch.testing.assert_close(f.total[:, 0], total)
    # Same thermophoretic term as Eq. 10 in 1-D, half its diffusion term.
    e10 = theory.flux(g, Q1, rho, drho, eta)
    torch.testing.assert_close(f.thermophoretic[:, 0], e10.thermophoretic)
    torch.testing.assert_close(f.diffusion[:, 0], 0.5 * e10.diffusion)


def test_exact_one_step_flux_of_the_binary_walk_vs_eq10_thermophoretic_term():
    # Brute force: at uniform density, one binary step moves mass rho*Delta-/2 right
    # across q and rho*Delta+/2 left, so J = rho (Delta- - Delta+) / 2 exactly.
    g = parse_g("1 + 0.5*sin(q)")
    for eta in (0.02, 0.01):
        dp, dm = _deltas(g, Q1, eta)
        exact = 0.5 * (dm - dp)[:, 0]
        eq10 = theory.flux(g, Q1, torch.ones(7, dtype=F64), torch.zeros(7, 1, dtype=F64), eta).thermophoretic
        torch.testing.assert_close(exact, eq10, rtol=20 * eta, atol=1e-12)


@pytest.mark.parametrize("name", list(G1))
def test_soret_equilibrium(name):
    text, gf, _ = G1[name]
    g = parse_g(text)
    grid = torch.linspace(-1.0, 1.0, 4001, dtype=F64)
    for law, k in (("eq10", 1), ("fokker_planck", 2)):
        rho = theory.soret_equilibrium(g, grid, theory=law)
        ref = gf(grid) ** (-k)
        torch.testing.assert_close(rho, ref / torch.trapezoid(ref, grid), rtol=1e-6, atol=0)
        assert theory.stationary_exponent(g, grid, theory=law) == pytest.approx(k, rel=1e-5)
    # Eq. 10 vanishes at its own equilibrium.
    q = grid[::400, None]
    rho = 1 / gf(q[:, 0])
    drho = (-G1[name][2](q[:, 0]) / gf(q[:, 0]) ** 2)[:, None]
    assert float(theory.flux(g, q, rho, drho, 0.1).total.abs().max()) < 1e-14


def test_theory_input_errors():
    g = parse_g("1 + q")
    with pytest.raises(UsageError):
        theory.soret_equilibrium(g, torch.linspace(0, 1, 5, dtype=F64), theory="other")
    with pytest.raises(UsageError, match="constant"):
        theory.stationary_exponent(parse_g("2 + 0*q"), torch.linspace(0, 1, 5, dtype=F64))
    with pytest.raises(UsageError, match="U must"):
        theory.flux(g, Q1, torch.ones(7), torch.zeros(7, 1), 0.1, U=[3])
    assert math.isfinite(float(theory.soret_coefficient(g, Q1 + 2, 0.1).sum()))
