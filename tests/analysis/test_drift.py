"""The drift estimators against exactly solvable processes and brute-force twins."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from thermosgd.analysis.drift import drift_summary, fit_scaling, window_drift
from thermosgd.cli import main
from thermosgd.errors import UsageError
from thermosgd.twolayer import theory
from thermosgd.twolayer.drift import (
    DriftSetup,
    one_step_drift,
    one_step_moments,
    population_moments,
    predicted_drift,
    trajectory_drift,
)
from thermosgd.twolayer.losses import dloss_df, loss_value

F64 = torch.float64


def test_noiseless_gradient_descent_has_zero_excess():
    """All clones take the same step −ηG: nothing is left beyond the mean gradient."""
    q0 = torch.tensor([0.3, -1.2, 2.0], dtype=F64)
    G = torch.tensor([0.5, 0.1, -0.7], dtype=F64)
    lr = 0.1
    q1 = (q0 - lr * G).expand(64, 3)
    out = one_step_moments(q0, q1, G, lr)
    np.testing.assert_allclose(out.excess, 0.0, atol=1e-15)
    np.testing.assert_allclose(out.excess_q2, 0.0, atol=1e-15)
    np.testing.assert_allclose(out.excess_se, 0.0, atol=1e-15)


def test_quadratic_toy_gives_the_ito_term_exactly():
    """q ← q − η(a q + ξ), ξ = ±s in antithetic pairs: E[Δq] + ηG = 0 and the q² excess is η²s², exactly."""
    q0 = torch.tensor([0.7, -0.4], dtype=F64)
    a, s, lr = torch.tensor([1.5, 0.2], dtype=F64), torch.tensor([0.8, 2.0], dtype=F64), 0.05
    signs = torch.tensor([1.0, -1.0], dtype=F64).repeat(50).unsqueeze(-1)  # (100, 1)
    q1 = q0 - lr * (a * q0 + s * signs)
    out = one_step_moments(q0, q1, a * q0, lr, grad_var=s * s)
    np.testing.assert_allclose(out.excess, 0.0, atol=1e-15)
    np.testing.assert_allclose(out.excess_q2, (lr * s) ** 2, rtol=1e-10)
    np.testing.assert_allclose(out.ito, (lr * s) ** 2, rtol=1e-14)


def test_quadratic_toy_gaussian_noise_within_standard_errors():
    """Gaussian ξ, 20,000 clones, seed 0: excesses within 4 standard errors of 0 and η²s²."""
    gen = torch.Generator().manual_seed(0)
    q0 = torch.tensor([0.7, -0.4, 1.0], dtype=F64)
    a, s, lr = torch.tensor([1.5, 0.2, -0.3], dtype=F64), torch.tensor([0.8, 2.0, 0.5], dtype=F64), 0.1
    xi = torch.randn(20_000, 3, generator=gen, dtype=F64) * s
    out = one_step_moments(q0, q0 - lr * (a * q0 + xi), a * q0, lr, grad_var=s * s)
    assert np.all(np.abs(out.excess) < 4 * out.excess_se)
    assert np.all(np.abs(out.excess_q2 - out.ito) < 4 * out.excess_q2_se)


def _brute_moments(W, b, V, x, y, loss):
    """Per-sample gradients with autograd, one sample at a time: mean and variance over samples."""
    gb, gv, e2 = [], [], []
    for k in range(x.shape[0]):
        bb, VV = b.clone().requires_grad_(True), V.clone().requires_grad_(True)
        f = torch.relu(W @ x[k] + bb) @ VV
        loss_value(f, y[k], loss).backward()
        gb.append(bb.grad)
        gv.append(VV.grad)
        e2.append(dloss_df(f.detach(), y[k], loss) ** 2)
    gb, gv = torch.stack(gb), torch.stack(gv)
    return gb.mean(0), gv.mean(0), gb.var(0, unbiased=False), gv.var(0, unbiased=False), torch.stack(e2).mean()


@pytest.mark.parametrize("loss", ["bce", "mse"])
def test_population_moments_match_autograd(loss):
    gen = torch.Generator().manual_seed(3)
    N, M, n = 4, 3, 40
    W = torch.randn(N, M, generator=gen, dtype=F64)
    b = torch.randn(N, generator=gen, dtype=F64) * 0.3
    V = torch.randn(N, generator=gen, dtype=F64)
    x = torch.randn(n, M, generator=gen, dtype=F64)
    y = torch.randint(0, 2, (n,), generator=gen).to(F64)
    got = population_moments(W[None], b[None], V[None], x, y, loss, random_labels=False)
    Gb, GV, vb, vV, e2 = _brute_moments(W, b, V, x, y, loss)
    for k, want in (("G_b", Gb), ("G_V", GV), ("var_b", vb), ("var_V", vV)):
        torch.testing.assert_close(got[k][0], want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got["err2"][0], e2)
    # Random labels: the label average equals an explicit average over y = 0 and y = 1.
    rb = population_moments(W[None], b[None], V[None], x, y, loss, random_labels=True)
    xx, yy = torch.cat([x, x]), torch.cat([torch.zeros(n, dtype=F64), torch.ones(n, dtype=F64)])
    Gb, GV, vb, vV, e2 = _brute_moments(W, b, V, xx, yy, loss)
    for k, want in (("G_b", Gb), ("G_V", GV), ("var_b", vb), ("var_V", vV)):
        torch.testing.assert_close(rb[k][0], want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(rb["err2"][0], e2)


def test_predicted_drift_matches_eq11_by_autograd():
    """Brute-force twin: Eq. 11 over U = {|V|, b} with g_V = φ1/√|B|, g_b = |V|φ2/√|B|, projected on u = g/‖g‖."""
    gen = torch.Generator().manual_seed(5)
    W = torch.randn(6, 4, generator=gen, dtype=F64)
    b = torch.randn(6, generator=gen, dtype=F64) * 0.5
    V = torch.randn(6, generator=gen, dtype=F64)
    err2, lr, bs = 0.27, 0.1, 3
    db, dV2 = predicted_drift(V, W, b, err2, lr, bs)
    for i in range(6):

        def g(q, i=i):
            absV, bi = q[0], q[1]
            return torch.stack([theory.phi1(W[i], bi, err2), absV * theory.phi2(W[i], bi, err2)]) / math.sqrt(bs)

        q = torch.stack([V[i].abs(), b[i]])
        gi = g(q)
        J = torch.autograd.functional.jacobian(g, q)  # J[i, j] = ∂_j g_i
        num = sum(gi[k] * gi[j] * J[k, j] for k in range(2) for j in range(2))
        c = lr**2 * num / (2 * gi.norm())
        u = gi / gi.norm()
        torch.testing.assert_close(db[i], -c * u[1], rtol=1e-6, atol=1e-15)
        torch.testing.assert_close(dV2[i], 2 * V[i].abs() * (-c * u[0]), rtol=1e-6, atol=1e-15)
    assert torch.all(db <= 0) and torch.all(dV2 <= 0)


def test_two_layer_one_step_recovers_zero_and_ito():
    """Clones of the initialization, 3000 per grid point, seed 1: b excess ≈ 0, V² excess ≈ η²var/|B| (|z| < 4.5)."""
    setup = DriftSetup(inputs=5, hidden=6)
    from thermosgd.twolayer.drift import initial_state as _initial_state

    W0, b0, V0 = _initial_state(setup)
    lrs, bss = [0.05, 0.2], [1, 3]
    states = (W0.expand(2, 2, *W0.shape), b0.expand(2, 2, 6), V0.expand(2, 2, 6))
    one = one_step_drift(setup, states, lrs, bss, clones=3000, pop_size=1 << 13)
    zb = one["b_excess"] / one["b_excess_se"]
    zv = (one["V2_excess"] - one["V2_ito"]) / one["V2_excess_se"]
    assert float(abs(zb).max()) < 4.5 and float(abs(zv).max()) < 4.5
    ito = one["V2_ito"].values
    assert np.all(ito > 0)
    # The Itô term is η² var/|B| at a fixed state: exactly the paper's η²/|B| scaling.
    np.testing.assert_allclose(ito[1, 0] / ito[0, 0], (0.2 / 0.05) ** 2, rtol=1e-12)
    np.testing.assert_allclose(ito[0, 1] / ito[0, 0], 1 / 3, rtol=1e-12)


def test_single_replica_blocks_follow_their_reference_exactly():
    """With one replica per block the reference steps on the same samples with the same weights."""
    traj = trajectory_drift(
        DriftSetup(inputs=4, hidden=5), [0.1], [1, 2], steps=30, blocks=2, per_block=1, record_every=10
    )
    np.testing.assert_allclose(traj["b"], traj["b_ref"], rtol=0, atol=1e-14)
    np.testing.assert_allclose(traj["V2"], traj["V2_ref"], rtol=0, atol=1e-14)
    assert traj["b"].dims == ("lr", "batch_size", "block", "step", "unit")
    assert np.all(traj["b_predicted"] <= 0) and np.all(traj["err2"] > 0.25)  # random labels: err2 ≥ 1/4


def test_window_drift_of_a_linear_series():
    import xarray as xr

    t = np.arange(0, 101, 10)
    ds = xr.Dataset({"q": (("block", "step"), np.stack([3.0 * t, -2.0 * t + 1]))}, coords={"step": t})
    np.testing.assert_allclose(window_drift(ds, "q", (5, 95)).values, [3.0, -2.0])
    with pytest.raises(UsageError):
        window_drift(ds, "q", (50, 50))


def test_fit_scaling_recovers_known_exponents():
    """|d| = 3 η^2 |B|^-1 (negative), 400 draws with 2 % noise, seed 0."""
    rng = np.random.default_rng(0)
    lr, bs = np.repeat([0.025, 0.05, 0.1], 3), np.tile([1, 2, 4], 3)
    d = -3 * lr**2 / bs
    fit = fit_scaling(lr, bs, d, d * (1 + 0.02 * rng.standard_normal((400, 9))))
    assert fit.sign == -1 and fit.valid_fraction == 1.0
    assert abs(fit.alpha - 2) < 1e-10 and abs(fit.beta - 1) < 1e-10
    assert fit.alpha_ci[0] < 2 < fit.alpha_ci[1] and fit.alpha_ci[1] - fit.alpha_ci[0] < 0.2
    mixed = fit_scaling(lr, bs, np.where(bs == 2, -d, d))
    assert mixed.sign == 0 and math.isnan(mixed.alpha)


def test_summary_end_to_end_small():
    setup = DriftSetup(inputs=4, hidden=5)
    from thermosgd.twolayer.drift import initial_state as _initial_state

    W0, b0, V0 = _initial_state(setup)
    lrs, bss = [0.05, 0.1], [1, 2]
    states = (W0.expand(2, 2, *W0.shape), b0.expand(2, 2, 5), V0.expand(2, 2, 5))
    one = one_step_drift(setup, states, lrs, bss, clones=256, pop_size=2048)
    traj = trajectory_drift(setup, lrs, bss, steps=40, blocks=3, per_block=8, record_every=5)
    s = drift_summary(one, traj, n_boot=50)
    assert len(s.one_step) == 4 and len(s.windows) == 4 * 2 * 4  # 4 quantities × 2 windows × 4 grid points
    assert {"b_early", "V2_late", "V2_shift_early", "one_step_V2_excess"} <= set(s.fits)
    assert all(r["predicted"] <= 0 for r in s.windows if r["quantity"] != "V2_var")
    # A variance starts at 0: over the early window it can only grow.
    assert all(r["measured"] > 0 for r in s.windows if r["quantity"] == "V2_var" and r["window"] == "early")
    by = {(r["quantity"], r["window"], r["lr"], r["batch_size"]): r["measured"] for r in s.windows}
    for (q, w, lr, bs), v in by.items():
        if q == "V2":  # the split is exact
            assert v == pytest.approx(by[("V2_var", w, lr, bs)] + by[("V2_shift", w, lr, bs)], rel=1e-9, abs=1e-15)


@pytest.mark.parametrize(
    "argv",
    [
        ["drift", "--steps", "2"],
        ["drift", "--lr", "0.1", "-0.1"],
        ["drift", "--batch-size", "0"],
        ["drift", "--blocks", "1"],
        ["drift", "--labels", "noise"],
        ["drift", "--steps", "abc"],
    ],
)
def test_drift_cli_bad_input_exits_2(argv):
    assert main(argv) == 2


def test_drift_cli_quick_json_and_files(tmp_path, capsys):
    assert (
        main(
            [
                "drift",
                "--quick",
                "--steps",
                "40",
                "--record-every",
                "5",
                "--replicas",
                "8",
                "--clones",
                "64",
                "--out",
                str(tmp_path),
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["experiment"] == "drift" and out["fits"]["b_early"]["sign"] in (-1, 0, 1)
    for suffix in ("png", "pdf", "md", "json"):
        assert (tmp_path / f"drift.{suffix}").stat().st_size > 0
