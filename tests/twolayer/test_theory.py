"""Two-layer theory (Eq. 23–27): closed forms against Monte Carlo and against
mpmath quadrature from a = b/‖W‖ = 5 down to −40, derivatives against autograd
and finite differences, ψ against the generic Soret formula of Eq. 11, and
Properties 4.1 / 4.2 as property-based tests."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import mpmath as mp
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from thermosgd.twolayer import theory as T


def _load(name):
    """A helper module beside this file (tests are not a package under --import-mode=importlib)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MC = _load("mc_twins")  # Monte Carlo over an explicit input sample
MP = _load("mp_reference")  # high-precision quadrature

DT = torch.float64
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True)

# A batch of units: (4,) outgoing weights, (4, 3) incoming weights, (4,) biases.
V = torch.tensor([0.7, -1.2, 0.3, 2.0], dtype=DT)
W = torch.tensor([[0.5, -0.3, 0.8], [1.0, 0.2, 0.1], [0.05, 0.02, -0.1], [2.0, -1.5, 0.4]], dtype=DT)
B = torch.tensor([0.3, -0.7, 0.05, -2.5], dtype=DT)


@pytest.fixture(scope="module")
def gaussian_x():
    return MC.sample_inputs(100_000, 3, "gaussian", seed=1)


@pytest.fixture(scope="module")
def uniform_x():
    return MC.sample_inputs(4_000, 3, "uniform", seed=2)


def _brute_force_terms(x):
    """Per-sample terms, written out unit by unit (the slow, obviously right twin)."""
    out = {"act": [], "relu2": [], "xx_act": []}
    for i in range(W.shape[0]):
        z = x @ W[i] + B[i]
        active = (z > 0).to(DT)
        out["act"].append(active)
        out["relu2"].append(torch.clamp(z, min=0) ** 2)
        out["xx_act"].append(x**2 * active[:, None])
    return {k: torch.stack(v) for k, v in out.items()}  # (4, n) or (4, n, 3)


def _assert_within(mc, exact, samples, n_se=5.0):
    """|MC − exact| below n_se standard errors of the per-sample terms (seeded, deterministic)."""
    se = samples.std(dim=1) / math.sqrt(samples.shape[1])
    assert torch.all((mc - exact).abs() <= n_se * se + 1e-12), (mc, exact, se)


def test_closed_forms_match_monte_carlo_on_gaussian_inputs(gaussian_x):
    terms = _brute_force_terms(gaussian_x)
    # the vectorized MC twin equals the unit-by-unit one ...
    torch.testing.assert_close(MC.activation_rate_mc(W, B, gaussian_x), terms["act"].mean(1))
    torch.testing.assert_close(MC.h_v_mc(V, W, B, gaussian_x), terms["relu2"].mean(1))
    torch.testing.assert_close(MC.h_w_mc(V, W, B, gaussian_x), V[:, None] ** 2 * terms["xx_act"].mean(1))
    torch.testing.assert_close(MC.h_b_mc(V, W, B, gaussian_x), V**2 * terms["act"].mean(1))
    # ... and the closed forms agree with it within 5 standard errors (n = 100 000, seed 1).
    _assert_within(terms["act"].mean(1), T.activation_rate(W, B), terms["act"])
    _assert_within(terms["relu2"].mean(1), T.h_v(V, W, B), terms["relu2"])
    for j in range(3):
        xx = terms["xx_act"][..., j]
        _assert_within(xx.mean(1), T.h_w(V, W, B)[:, j] / V**2, xx)
    _assert_within(terms["act"].mean(1), T.h_b(V, W, B) / V**2, terms["act"])


def test_phi_closed_forms_match_monte_carlo(gaussian_x):
    err2 = 0.25
    terms = _brute_force_terms(gaussian_x)
    torch.testing.assert_close(MC.phi1_mc(W, B, gaussian_x, err2) ** 2, err2 * terms["relu2"].mean(1))
    torch.testing.assert_close(MC.phi2_mc(W, B, gaussian_x, err2) ** 2, err2 * terms["act"].mean(1))
    _assert_within(MC.phi1_mc(W, B, gaussian_x, err2) ** 2, T.phi1(W, B, err2) ** 2, err2 * terms["relu2"])
    _assert_within(MC.phi2_mc(W, B, gaussian_x, err2) ** 2, T.phi2(W, B, err2) ** 2, err2 * terms["act"])
    # per-sample residuals equal to a constant reproduce the independence assumption
    const = torch.full((gaussian_x.shape[0],), err2, dtype=DT)
    torch.testing.assert_close(MC.phi1_mc(W, B, gaussian_x, const), MC.phi1_mc(W, B, gaussian_x, err2))


def test_psi_monte_carlo_matches_closed_form(gaussian_x):
    # Kernel estimate of the density of z at 0: bias O(h²) and noise ~ (n h)^(-1/2); 4 % relative.
    torch.testing.assert_close(MC.psi_mc(V, W, B, gaussian_x, 0.25), T.psi(V, W, B, 0.25), rtol=0.04, atol=1e-6)


def test_uniform_inputs_match_exact_one_dimensional_integrals():
    # x ~ U(0, 1), M = 1: P(w x + b > 0) and E σ(w x + b)² in closed form, w > 0.
    x = MC.sample_inputs(100_000, 1, "uniform", seed=3)
    w, b = torch.tensor([[1.5]], dtype=DT), torch.tensor([-0.6], dtype=DT)
    x0 = max(0.0, 0.6 / 1.5)
    exact_act = 1 - x0
    exact_h_v = ((1.5 - 0.6) ** 3 - (1.5 * x0 - 0.6) ** 3) / (3 * 1.5)
    z = x[:, 0] * 1.5 - 0.6
    _assert_within(MC.activation_rate_mc(w, b, x), torch.tensor([exact_act], dtype=DT), (z > 0).to(DT)[None])
    _assert_within(MC.h_v_mc(1.0, w, b, x), torch.tensor([exact_h_v], dtype=DT), torch.relu(z)[None] ** 2)


def test_derivatives_closed_form_match_autograd():
    b = B.clone().requires_grad_(True)
    for phi, dphi in ((T.phi1, T.dphi1_db), (T.phi2, T.dphi2_db)):
        (grad,) = torch.autograd.grad(phi(W, b, 0.3).sum(), b)
        torch.testing.assert_close(grad, dphi(W, B, 0.3))


def test_psi_autograd_matches_finite_differences():
    args = (V.clone().requires_grad_(True), W.clone().requires_grad_(True), B.clone().requires_grad_(True))
    assert torch.autograd.gradcheck(lambda v, w, b: T.psi(v, w, b, 0.25), args)


def _soret_eq11(v, w, b, err2, batch_size):
    """Eq. 11's Σ_ij g_i g_j ∂_j g_i / (2 sqrt(Σ g_i²)) over U = {V, b}, derivatives by autograd."""

    def g(q):
        return torch.stack(
            [T.phi1(w, q[1], err2) / math.sqrt(batch_size), q[0] * T.phi2(w, q[1], err2) / math.sqrt(batch_size)]
        )

    q = torch.stack([v, b])
    gq = g(q)
    jac = torch.autograd.functional.jacobian(g, q)  # jac[i, j] = ∂_j g_i
    return (gq[:, None] * gq[None, :] * jac).sum() / (2 * torch.sqrt((gq**2).sum()))


@pytest.mark.parametrize("i", range(4))
def test_psi_is_eq11_soret_term_for_g_v_and_g_b(i):
    # J_t = η²/|B| ψ must equal η² × Eq. 11's sum with g_V = φ1/√|B|, g_b = V φ2/√|B|.
    lr, batch_size, err2 = 0.05, 3, 0.25
    generic = lr**2 * _soret_eq11(V[i], W[i], B[i], err2, batch_size)
    torch.testing.assert_close(T.thermophoretic_flow(V[i], W[i], B[i], err2, lr, batch_size), generic)


def test_flow_scales_as_lr_squared_over_batch_size():
    base = T.thermophoretic_flow(V, W, B, 0.25, lr=0.05, batch_size=2)
    torch.testing.assert_close(T.thermophoretic_flow(V, W, B, 0.25, lr=0.1, batch_size=2), 4 * base)
    torch.testing.assert_close(T.thermophoretic_flow(V, W, B, 0.25, lr=0.05, batch_size=6), base / 3)


def test_broadcasting_shapes():
    v = torch.ones(5, 1, dtype=DT)
    assert T.h_v(v, W, B).shape == (5, 4)
    assert T.h_w(v, W, B).shape == (5, 4, 3)
    assert T.psi(v, W, B, 0.25).shape == (5, 4)
    assert MC.h_w_mc(v, W, B, MC.sample_inputs(10, 3)).shape == (5, 4, 3)
    assert MC.psi_mc(v, W, B, MC.sample_inputs(50, 3), 0.25).shape == (5, 4)


def test_psi_is_zero_without_residual():
    torch.testing.assert_close(T.psi(V, W, B, 0.0), torch.zeros(4, dtype=DT), rtol=0, atol=0)


# --------------------------------------------------------------------------
# Lower tail: relative accuracy against mpmath quadrature
# --------------------------------------------------------------------------

# a = b/‖W‖ from the bulk to far below the point (−8.5) where torch's ndtr is 0.
TAIL_GRID = [5.0, 1.0, 0.0, -1.0, -3.0, -4.0, -4.5, -8.0, -10.0, -20.0, -30.0, -37.0, -38.0, -40.0]
W_REF = [3.0, -4.0]  # ‖W‖ = 5 exactly, so b = 5a gives the grid value of a exactly
V_REF = [0.7, -2.0]
ERR2 = 0.25
# Relative tolerance in float64. Measured worst case 1.6e-13 (Φ at a = −37; the
# condition number of φ(a) in a is a², so rounding of b/s alone costs ~a² ulp).
RTOL = 1e-11
# Below the smallest normal float64 relative precision cannot hold: there the
# error may be RTOL × 2.2e-308 in absolute terms, which also accepts 0 where
# the true value (ψ, Φ and the h functions near a = −40, ~1e-348) is below
# the smallest subnormal.
ATOL = RTOL * torch.finfo(DT).tiny


def _assert_relative(got: torch.Tensor, ref, what: str):
    got = got.reshape(-1).tolist()
    ref = ref if isinstance(ref, list) else [ref]
    for g, r in zip(got, ref, strict=True):
        assert math.isfinite(g), (what, g)
        err = abs(mp.mpf(g) - r)
        assert err <= RTOL * abs(r) + ATOL, (
            f"{what}: got {g!r}, quadrature {mp.nstr(r, 17)}, rel {mp.nstr(err / abs(r), 3)}"
        )


@pytest.mark.parametrize("a", TAIL_GRID)
def test_closed_forms_match_mpmath_quadrature_deep_in_the_tail(a):
    b = 5.0 * a
    ref = MP.reference(W_REF, b, V_REF, ERR2)
    w, v = torch.tensor(W_REF, dtype=DT), torch.tensor(V_REF, dtype=DT)
    _assert_relative(T.activation_rate(w, b), ref["activation_rate"], "activation_rate")
    _assert_relative(T.h_v(1.0, w, b), ref["h_v"], "h_v")
    _assert_relative(T.h_w(v[:, None], w, b), [x for row in ref["h_w"] for x in row], "h_w")
    _assert_relative(T.h_b(v, w, b), ref["h_b"], "h_b")
    _assert_relative(T.phi1(w, b, ERR2), ref["phi1"], "phi1")
    _assert_relative(T.phi2(w, b, ERR2), ref["phi2"], "phi2")
    _assert_relative(T.dphi1_db(w, b, ERR2), ref["dphi1_db"], "dphi1_db")
    _assert_relative(T.dphi2_db(w, b, ERR2), ref["dphi2_db"], "dphi2_db")
    _assert_relative(T.psi(v, w, b, ERR2), ref["psi"], "psi")
    _assert_relative(
        T.thermophoretic_flow(v, w, b, ERR2, lr=0.1, batch_size=4),
        [x * mp.mpf(0.1) ** 2 / 4 for x in ref["psi"]],
        "J_t",
    )


def test_tail_derivatives_match_autograd():
    # In the tail φ1 runs through the continued fraction; its autograd derivative
    # must agree with the closed form ∂_b φ1 (and likewise φ2) to rounding.
    w = torch.tensor(W_REF, dtype=DT)
    b = 5.0 * torch.tensor([-3.0, -4.5, -8.0, -20.0, -40.0], dtype=DT)
    bg = b.clone().requires_grad_(True)
    for phi, dphi in ((T.phi1, T.dphi1_db), (T.phi2, T.dphi2_db)):
        (grad,) = torch.autograd.grad(phi(w, bg, ERR2).sum(), bg)
        exact = dphi(w, b, ERR2)
        assert torch.all(exact > 0)
        torch.testing.assert_close(grad, exact, rtol=1e-12, atol=0)


# --------------------------------------------------------------------------
# Property-based tests
# --------------------------------------------------------------------------

coef = st.floats(-2.0, 2.0, allow_nan=False)
bias = st.floats(-3.0, 3.0, allow_nan=False)
weights = st.lists(coef, min_size=3, max_size=3)
TOL = 1e-12


def _ordered(a, b, key=lambda t: t):
    return (a, b) if key(a) <= key(b) else (b, a)


@PROPERTY
@given(v=st.floats(0.0, 2.0), w=weights, b=bias, err2=st.floats(1e-3, 1.0))
def test_psi_nonnegative_for_nonnegative_v_odd_in_v_and_linear_in_err2(v, w, b, err2):
    w = torch.tensor(w, dtype=DT)
    assume(torch.linalg.vector_norm(w) > 0.05)
    p = T.psi(v, w, b, err2)
    assert p >= 0  # drift towards smaller b and V (Sec. 5)
    torch.testing.assert_close(T.psi(-v, w, b, err2), -p)  # as printed: odd in V
    torch.testing.assert_close(p, err2 * T.psi(v, w, b, 1.0))  # "bounded by ... ∫(p − y)²": exactly ∝ err2


@PROPERTY
@given(v=st.tuples(coef, coef), w=weights, b=st.tuples(bias, bias))
def test_property_4_1_closed_form(v, w, b):
    """Given W, V1² ≤ V2² and b1 ≤ b2 ⇒ h_v, h_w, h_b and σ̄' do not decrease."""
    (v1, v2), (b1, b2) = _ordered(*v, key=abs), _ordered(*b)
    w = torch.tensor(w, dtype=DT)
    assume(torch.linalg.vector_norm(w) > 0.05)
    assert T.h_v(v1, w, b1) <= T.h_v(v2, w, b2) + TOL
    assert torch.all(T.h_w(v1, w, b1) <= T.h_w(v2, w, b2) + TOL)
    assert T.h_b(v1, w, b1) <= T.h_b(v2, w, b2) + TOL
    assert T.activation_rate(w, b1) <= T.activation_rate(w, b2) + TOL


@PROPERTY
@given(v=st.tuples(coef, coef), w=weights, b=st.tuples(bias, bias))
def test_property_4_1_monte_carlo_gaussian_sample(gaussian_x, v, w, b):
    (v1, v2), (b1, b2) = _ordered(*v, key=abs), _ordered(*b)
    w, x = torch.tensor(w, dtype=DT), gaussian_x[:2_000]
    assert MC.h_v_mc(v1, w, b1, x) <= MC.h_v_mc(v2, w, b2, x) + TOL
    assert torch.all(MC.h_w_mc(v1, w, b1, x) <= MC.h_w_mc(v2, w, b2, x) + TOL)
    assert MC.h_b_mc(v1, w, b1, x) <= MC.h_b_mc(v2, w, b2, x) + TOL
    assert MC.activation_rate_mc(w, b1, x) <= MC.activation_rate_mc(w, b2, x) + TOL


@PROPERTY
@given(
    v=st.tuples(coef, coef),
    w=weights,
    dw=st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3),
    b=st.tuples(bias, bias),
)
def test_property_4_2_nonnegative_inputs(uniform_x, v, w, dw, b):
    """x ≥ 0, V1² ≤ V2², W1 ≤ W2, b1 ≤ b2 ⇒ every h(V1, W1, b1) ≤ h(V2, W2, b2).

    This is the reading with W1 on the left and W2 on the right in every line;
    the printed lines 2–3 (W2 left, W right) are false, see the next test.
    """
    (v1, v2), (b1, b2) = _ordered(*v, key=abs), _ordered(*b)
    w1 = torch.tensor(w, dtype=DT)
    w2 = w1 + torch.tensor(dw, dtype=DT)
    x = uniform_x
    assert MC.h_v_mc(v1, w1, b1, x) <= MC.h_v_mc(v2, w2, b2, x) + TOL
    assert torch.all(MC.h_w_mc(v1, w1, b1, x) <= MC.h_w_mc(v2, w2, b2, x) + TOL)
    assert MC.h_b_mc(v1, w1, b1, x) <= MC.h_b_mc(v2, w2, b2, x) + TOL
    assert MC.activation_rate_mc(w1, b1, x) <= MC.activation_rate_mc(w2, b2, x) + TOL


def test_property_4_2_as_printed_has_a_counterexample(uniform_x):
    # Printed: h_w(V1, W2, b1) ≤ h_w(V2, W, b2). With W = W1 ≤ W2, V1 = V2, b1 = b2 it fails:
    # z = 0.1 (x1 + x2 + x3) − 0.5 < 0 for all x in [0, 1]³, so h_w(1, W1, −0.5) = 0,
    # while W2 = (1, 1, 1) activates the unit for most inputs.
    w1 = torch.tensor([0.1, 0.1, 0.1], dtype=DT)
    w2 = torch.tensor([1.0, 1.0, 1.0], dtype=DT)
    printed_lhs = MC.h_w_mc(1.0, w2, -0.5, uniform_x)
    printed_rhs = MC.h_w_mc(1.0, w1, -0.5, uniform_x)
    assert torch.all(printed_rhs == 0)
    assert torch.all(printed_lhs > 0.2)
