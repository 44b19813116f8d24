"""The fall decomposed: the clone runs against exact facts, the estimates against hand computations.

Statistical checks use fixed seeds and state their tolerance: 4 standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import xarray as xr

from thermosgd.analysis.decomposition import CONTRASTS, DETAIL, claims, mean_interval, parts, shares
from thermosgd.analysis.verdict import VERDICTS
from thermosgd.errors import UsageError
from thermosgd.twolayer.decomposition import (
    NOISES,
    OBSERVABLES,
    DecompositionSettings,
    anchor_states,
    decomposition_runs,
    frozen_spread,
    observables,
    per_sample_gradients,
)
from thermosgd.twolayer.drift import DriftSetup, initial_state
from thermosgd.twolayer.noise import per_sample_variance

SMALL = DecompositionSettings(lr=0.1, anchors=(0, 40), states=12, clones=16, horizons=(1, 5), gd_batch=16, pop_size=512)


@pytest.fixture(scope="module")
def runs() -> xr.Dataset:
    return decomposition_runs(DriftSetup(inputs=4, hidden=5), SMALL)


def test_noise_induced_part_of_theta_is_zero_after_one_step(runs):
    """E[θ_1 | θ_0] = θ_0 − η∇L for every unbiased noise: b and V (linear in θ) get no noise-induced part."""
    for row in parts(runs, ["bias_mean", "v_mean"]):
        if row["horizon"] == 1:
            n = row["noise_induced"]
            assert abs(n["mean"]) <= 4 * n["se"], row


def test_the_noise_free_path_is_descent_on_the_mean_gradient(runs):
    """At k = 1 from the shared initialization, every state's free path is one step of −η∇L on its own sample:
    their mean agrees with the clones' mean change (both unbiased for the same thing), to 4 s.e."""
    for row in parts(runs, ["bias_mean", "v_mean"]):
        if row["horizon"] == 1 and row["anchor"] == 0 and row["noise"] == "gd":
            d, t = row["deterministic"], row["total"]
            assert abs(d["mean"] - t["mean"]) <= 4 * math.hypot(d["se"], t["se"])


def test_anchor_zero_is_the_shared_initialization_and_later_anchors_differ():
    setup = DriftSetup(inputs=4, hidden=5)
    W, b, V = anchor_states(setup, SMALL)
    W0, b0, V0 = initial_state(setup)
    assert torch.equal(W[0], W0.expand_as(W[0])) and torch.equal(b[0], b0.expand_as(b[0]))
    assert not torch.equal(V[1, 0], V[1, 1])  # each trajectory its own data


def test_observables_match_a_loop_over_units():
    g = torch.Generator().manual_seed(0)
    W, b, V = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, generator=g), torch.randn(2, 3, generator=g)
    got = observables(W, b, V)
    for r in range(2):
        rate = sum(0.5 * math.erfc(-float(b[r, i] / W[r, i].norm()) / math.sqrt(2)) for i in range(3)) / 3
        assert got["activation_rate"][r].item() == pytest.approx(rate, rel=1e-6)
        assert got["v2"][r].item() == pytest.approx(sum(float(v) ** 2 for v in V[r]), rel=1e-6)
        assert got["w_norm"][r].item() == pytest.approx(float(torch.sqrt((W[r] ** 2).sum())), rel=1e-6)


def test_dataset_layout_and_reproducibility(runs):
    assert runs[OBSERVABLES[0]].dims == ("noise", "anchor", "state", "horizon")
    assert list(runs["noise"].values) == list(NOISES)
    again = decomposition_runs(DriftSetup(inputs=4, hidden=5), SMALL)
    xr.testing.assert_identical(runs, again)


def test_mean_interval_is_the_t_interval():
    v = np.array([1.0, 2.0, 4.0, 7.0])
    got = mean_interval(v)
    se = np.std(v, ddof=1) / 2
    assert got["mean"] == 3.5 and got["se"] == pytest.approx(se)
    assert got["high"] - got["mean"] == pytest.approx(3.182446305284263 * se)  # t_{0.975, 3}
    assert math.isnan(mean_interval(np.array([1.0]))["se"])


def _synthetic(effects: dict[str, float], S: int = 40, noise: float = 0.01, seed: int = 0) -> xr.Dataset:
    """A decomposition dataset with known parts: q_free − q_0 = −1, model − free = effects[model] (+ noise)."""
    rng = np.random.default_rng(seed)
    start = rng.normal(size=(1, S))
    free = start[..., None] - 1.0
    clone = np.stack([free + effects[n] + noise * rng.normal(size=free.shape) for n in NOISES])
    coords = {"noise": list(NOISES), "anchor": [0], "state": np.arange(S), "horizon": [1]}
    return xr.Dataset(
        {
            "q": (("noise", "anchor", "state", "horizon"), clone),
            "q_start": (("anchor", "state"), start),
            "q_free": (("anchor", "state", "horizon"), free),
        },
        coords=coords,
    )


def test_parts_recover_known_parts():
    ds = _synthetic({"sgd": -0.4, "gd": -0.01, "gaussian": -0.38, "frozen": -0.1, "frozen_cov": -0.2})
    rows = {r["noise"]: r for r in parts(ds)}
    assert rows["sgd"]["deterministic"]["mean"] == pytest.approx(-1.0)
    assert rows["sgd"]["noise_induced"]["low"] < -0.4 < rows["sgd"]["noise_induced"]["high"]
    assert rows["frozen"]["total"]["mean"] == pytest.approx(-1.1, abs=0.01)


def test_shares_add_up_to_one_and_cover_the_truth():
    ds = _synthetic({"sgd": -0.4, "gd": -0.02, "gaussian": -0.38, "frozen": -0.1, "frozen_cov": -0.2})
    (row,) = shares(ds)
    got = {c: row["shares"][c]["share"] for c in CONTRASTS}
    assert sum(got.values()) == pytest.approx(1.0)
    assert sum(row["shares"][c]["share"] for c in DETAIL) == pytest.approx(got["theta_dependence"])
    truth = {
        "theta_dependence": 0.3 / 0.4,
        "state_independent": 0.08 / 0.4,
        "gd_residual": 0.02 / 0.4,
        "higher_moments": 0.02 / 0.4,
        "theta_alone": 0.18 / 0.4,
        "correlations": 0.1 / 0.4,
    }
    for c, v in truth.items():
        assert row["shares"][c]["low"] <= v <= row["shares"][c]["high"], (c, row["shares"][c])


def test_shares_are_withheld_when_sgds_noise_part_is_not_resolved():
    (row,) = shares(_synthetic(dict.fromkeys(NOISES, 0.0)))
    assert all(v is None for v in row["shares"].values()) and "not resolved" in row["note"]


@pytest.mark.parametrize(
    "change", [{"states": 1}, {"horizons": (10, 1)}, {"anchors": (0, 0)}, {"lr": -1.0}, {"gd_batch": 1}]
)
def test_bad_settings_are_refused(change):
    with pytest.raises(UsageError):
        DecompositionSettings(**{**SMALL.__dict__, **change}).checked()


def _small_state(seed: int = 0, R: int = 2, G: int = 7, N: int = 3, M: int = 4):
    g = torch.Generator().manual_seed(seed)
    W, b, V = (torch.randn(*shape, generator=g, dtype=torch.float64) for shape in ((R, N, M), (R, N), (R, N)))
    x = torch.randn(R, G, M, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (R, G), generator=g).to(torch.float64)
    return W, b, V, x, y


@pytest.mark.parametrize("loss", ["bce", "mse"])
def test_per_sample_gradients_match_autograd(loss):
    W, b, V, x, y = _small_state()
    got = per_sample_gradients(W, b, V, x, y, loss)
    for r in range(W.shape[0]):
        for i in range(x.shape[1]):
            Wr, br, Vr = (t[r].clone().requires_grad_(True) for t in (W, b, V))
            f = torch.relu(Wr @ x[r, i] + br) @ Vr
            ell = (
                torch.nn.functional.binary_cross_entropy_with_logits(f, y[r, i])
                if loss == "bce"
                else 0.5 * (f - y[r, i]) ** 2
            )
            ell.backward()
            want = torch.cat([Wr.grad.flatten(), br.grad, Vr.grad])
            torch.testing.assert_close(got[r, i], want, rtol=1e-12, atol=1e-14)


def test_frozen_cov_noise_has_the_full_covariance_and_frozens_diagonal():
    """spreadᵀspread = Σ̂/|B| (the per-sample gradients' unbiased covariance), whose diagonal is frozen's σ₀²/|B|."""
    W, b, V, x, y = _small_state(1)
    spread = frozen_spread(W, b, V, x, y, "bce", batch_size=3)
    g = per_sample_gradients(W, b, V, x, y, "bce")
    for r in range(W.shape[0]):
        cov = spread[r].T @ spread[r]
        torch.testing.assert_close(cov, torch.cov(g[r].T) / 3, rtol=1e-10, atol=1e-14)
        diag = per_sample_variance(W, b, V, x, y, "bce")[r] / 3
        torch.testing.assert_close(torch.diagonal(cov), diag, rtol=1e-8, atol=1e-14)


def _summary(mean: float, half: float) -> dict:
    """A :func:`mean_interval` record with a symmetric interval (se = half / 1.96)."""
    return {"mean": mean, "se": half / 1.96, "low": mean - half, "high": mean + half, "n": 16}


def _share_row(anchor: int, horizon: int, theta: dict, state: dict) -> dict:
    return {
        "anchor": anchor,
        "horizon": horizon,
        "observable": "activation_rate",
        "sgd_noise_induced": _summary(-0.01, 0.001),
        "contrasts": {"theta_dependence": theta, "state_independent": state},
    }


@pytest.mark.parametrize(
    ("theta", "state", "expected"),
    [
        # θ-dependence carries a resolved fall; state-independent noise within ±0.1 × |N| = ±0.001
        (_summary(-0.009, 0.001), _summary(0.0001, 0.0005), ("agrees", "agrees")),
        # θ-dependence does not resolve; state-independent noise carries 40% of the fall
        (_summary(-0.001, 0.002), _summary(-0.004, 0.001), ("no effect", "disagrees")),
        # θ-dependence pushes the other way; the state-independent interval straddles the margin
        (_summary(0.005, 0.001), _summary(-0.001, 0.001), ("opposite", "inconclusive")),
    ],
)
def test_claims_judge_each_part_at_the_longest_horizon(theta, state, expected):
    rows = [_share_row(0, 1, _summary(0.5, 0.1), _summary(0.5, 0.1)), _share_row(0, 100, theta, state)]
    judged = claims(rows, margin=0.1)
    assert [c.compared for c in judged] == ["sgd − frozen", "frozen − gd"]
    assert tuple(c.status for c in judged) == expected
    assert judged[1].margin == pytest.approx(0.001) and judged[0].margin is None
    assert all(c.setting == "activation rate, 100 steps from step 0" for c in judged)


def test_claims_of_a_run_one_pair_per_anchor(runs):
    judged = claims(shares(runs, n_boot=50), margin=0.1)
    assert [c.setting for c in judged[::2]] == [f"activation rate, 5 steps from step {a}" for a in SMALL.anchors]
    assert all(c.status in VERDICTS and c.reason for c in judged)
