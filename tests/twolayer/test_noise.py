"""The noise models "gd", "gaussian", "frozen" against brute-force twins (loops over samples, autograd).

Statistical tests draw D noise vectors at a fixed θ from a fixed seed and compare
empirical moments with the exact ones, with tolerances of 5 standard errors
(exact for Gaussian draws: Var(Ĉ_jk) = (C_jj C_kk + C_jk²)/D).
"""

import math

import numpy as np
import pytest
import torch

from thermosgd.config import from_dict
from thermosgd.twolayer.data import INIT, NOISE, NOISE_INIT, SampleStream, generator
from thermosgd.twolayer.engine import _CHUNK, train
from thermosgd.twolayer.noise import per_sample_variance
from thermosgd.twolayer.params import init_params
from thermosgd.twolayer.steps import frozen_step, gaussian_step, gd_step

F64 = torch.float64


def _loss(f, y, loss):
    if loss == "bce":
        return torch.nn.functional.binary_cross_entropy_with_logits(f, y)
    return 0.5 * (f - y) ** 2


def per_sample_grads(W, b, V, x, y, loss="bce", bias=True):
    """Slow twin: (G, P) per-sample gradients, entries (W row-major, b, V), by autograd one sample at a time."""
    rows = []
    for i in range(x.shape[0]):
        w_, b_, v_ = (t.clone().requires_grad_(True) for t in (W, b, V))
        _loss(torch.relu(w_ @ x[i] + b_) @ v_, y[i], loss).backward()
        gb = b_.grad if bias else torch.zeros_like(b)
        rows.append(torch.cat([w_.grad.flatten(), gb, v_.grad]))
    return torch.stack(rows)


def _state(seed, N=3, M=2):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(N, M, generator=g, dtype=F64)
    b = torch.randn(N, generator=g, dtype=F64) * 0.3
    V = torch.randn(N, generator=g, dtype=F64)
    return W, b, V


def _flat(W, b, V):
    return torch.cat([W.flatten(1), b, V], 1)


def _clones(D, W, b, V):
    return (W.expand(D, *W.shape).clone(), b.expand(D, *b.shape).clone(), V.expand(D, *V.shape).clone())


@pytest.mark.parametrize("loss", ["bce", "mse"])
@pytest.mark.parametrize("bias", [True, False])
def test_gd_step_is_a_full_batch_autograd_step(loss, bias):
    g = torch.Generator().manual_seed(2)
    R, G, N, M = 3, 40, 5, 4
    W = torch.randn(R, N, M, generator=g, dtype=F64)
    b = torch.randn(R, N, generator=g, dtype=F64) if bias else torch.zeros(R, N, dtype=F64)
    V = torch.randn(R, N, generator=g, dtype=F64)
    x = torch.randn(R, G, M, generator=g, dtype=F64)
    y = torch.randint(0, 2, (R, G), generator=g).double()
    lr = torch.tensor([0.05, 0.1, 0.5], dtype=F64)
    expect = []
    for r in range(R):
        w_, b_, v_ = (t.clone().requires_grad_(True) for t in (W[r], b[r], V[r]))
        f = torch.relu(x[r] @ w_.T + b_) @ v_
        ell = (
            torch.nn.functional.binary_cross_entropy_with_logits(f, y[r])
            if loss == "bce"
            else (0.5 * ((f - y[r]) ** 2).mean())
        )
        ell.backward()
        with torch.no_grad():
            expect.append((w_ - lr[r] * w_.grad, (b_ - lr[r] * b_.grad) if bias else b_, v_ - lr[r] * v_.grad))
    gd_step(W, b, V, x, y, lr, loss, bias)
    for r in range(R):
        for got, want in zip((W[r], b[r], V[r]), expect[r]):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def _standardized_cov_error(xi, C):
    D = xi.shape[0]
    emp = torch.cov(xi.T)
    se = torch.sqrt((torch.outer(C.diagonal(), C.diagonal()) + C * C) / D)
    return ((emp - C).abs() / se).max().item()


@pytest.mark.parametrize("loss", ["bce", "mse"])
def test_gaussian_noise_has_the_per_sample_gradient_covariance_over_batch_size(loss):
    """50 000 draws at fixed θ and fixed G = 12 samples; tiny net N = 3, M = 2 (P = 12), seed 7."""
    W, b, V = _state(7)
    G, D, lr, B = 12, 50_000, 0.1, 2.0
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(G, 2, generator=gen, dtype=F64)
    y = torch.randint(0, 2, (G,), generator=gen).double()
    grads = per_sample_grads(W, b, V, x, y, loss)
    mean, C = grads.mean(0), torch.cov(grads.T) / B  # unbiased Σ̂ / |B|
    Wc, bc, Vc = _clones(D, W, b, V)
    z = torch.randn(D, G, generator=gen, dtype=F64)
    gaussian_step(
        Wc,
        bc,
        Vc,
        x.expand(D, G, 2),
        y.expand(D, G),
        torch.full((D,), lr, dtype=F64),
        torch.full((D,), B, dtype=F64),
        z,
        loss,
    )
    xi = (_flat(W[None], b[None], V[None]) - _flat(Wc, bc, Vc)) / lr - mean  # (D, P)
    assert _standardized_cov_error(xi, C) < 5
    assert (xi.mean(0).abs() / torch.sqrt(C.diagonal() / D)).max() < 5
    # The test has power: the covariance without the 1/|B| is rejected by far.
    assert _standardized_cov_error(xi, C * B) > 50


def test_per_sample_variance_matches_a_loop_over_samples():
    g = torch.Generator().manual_seed(4)
    R, G, N, M = 2, 30, 3, 2
    W = torch.randn(R, N, M, generator=g, dtype=F64)
    b = torch.randn(R, N, generator=g, dtype=F64)
    V = torch.randn(R, N, generator=g, dtype=F64)
    x = torch.randn(R, G, M, generator=g, dtype=F64)
    y = torch.randint(0, 2, (R, G), generator=g).double()
    for bias in (True, False):
        got = per_sample_variance(W, b, V, x, y, "bce", bias)
        for r in range(R):
            want = per_sample_grads(W[r], b[r], V[r], x[r], y[r], bias=bias).var(0, unbiased=True)
            torch.testing.assert_close(got[r], want, rtol=1e-10, atol=1e-14)


def test_frozen_noise_has_the_initial_variance_at_a_later_theta():
    """σ₀² fixed at θ₀; at θ₀ and at a very different θ₁ the noise variance is σ₀²/|B| (seed 9, 40 000 draws)."""
    W0, b0, V0 = _state(9)
    G, D, lr, B = 16, 40_000, 0.05, 3.0
    gen = torch.Generator().manual_seed(10)
    x = torch.randn(G, 2, generator=gen, dtype=F64)
    y = torch.randint(0, 2, (G,), generator=gen).double()
    sigma2 = per_sample_variance(W0[None], b0[None], V0[None], x[None], y[None], "bce")[0]
    scale = (sigma2 / B).sqrt()
    W1, b1, V1 = 2.5 * W0 + 0.5, b0 - 1.0, -3 * V0  # a later θ, far from θ₀
    sigma2_later = per_sample_variance(W1[None], b1[None], V1[None], x[None], y[None], "bce")[0]
    assert ((sigma2_later - sigma2).abs() > 0.5 * sigma2).sum() >= 6  # the per-sample variance has moved
    for W, b, V in ((W0, b0, V0), (W1, b1, V1)):
        mean = per_sample_grads(W, b, V, x, y).mean(0)
        Wc, bc, Vc = _clones(D, W, b, V)
        z = torch.randn(D, sigma2.numel(), generator=gen, dtype=F64)
        frozen_step(
            Wc,
            bc,
            Vc,
            x.expand(D, G, 2),
            y.expand(D, G),
            torch.full((D,), lr, dtype=F64),
            scale.expand(D, -1),
            z,
            "bce",
        )
        xi = (_flat(W[None], b[None], V[None]) - _flat(Wc, bc, Vc)) / lr - mean
        var = xi.var(0)
        se = sigma2 / B * math.sqrt(2 / (D - 1))
        assert ((var - sigma2 / B).abs() / se).max() < 5


def _cfg(noise, **train):
    base = {
        "lr": [0.05, 0.2],
        "batch_size": [1, 2],
        "seeds": [0, 1],
        "steps": 6,
        "record_every": 6,
        "dtype": "float64",
        "noise": noise,
        "gd_batch": 16,
    }
    base.update(train)
    return from_dict({"model": {"inputs": 3, "hidden": 4}, "train": base})


@pytest.mark.parametrize("noise", ["gd", "gaussian", "frozen"])
def test_engine_run_matches_a_per_replica_loop(noise):
    """Twin of the whole engine path: per replica, its G samples and normal draws from the documented
    streams, the per-sample gradients by autograd, θ ← θ − η(ḡ + ξ)."""
    cfg = _cfg(noise)
    ds = train(cfg)
    t, G = cfg.train, cfg.train.gd_batch
    chunk = min(_CHUNK, (1 << 18) // (G * cfg.model.inputs))  # the engine draws about 2^18 inputs at once
    assert chunk >= t.steps
    for seed in t.seeds:
        W0, b0, V0 = init_params(cfg, generator(t.seed, seed, INIT), F64)
        # The G-sample models draw fresh samples in float32 (Gaussian inputs from Philox) and widen them.
        stream = SampleStream(cfg, t.seed, seed, dtype=torch.float32, counter_inputs=True)
        xs, ys = (v.double() for v in stream.batches(chunk, G))
        P = W0.numel() + 2 * b0.numel()
        z = torch.randn(chunk, G if noise == "gaussian" else P, generator=generator(t.seed, seed, NOISE), dtype=F64)
        if noise == "frozen":
            x0, y0 = (v.double() for v in stream.draw(G, generator(t.seed, seed, NOISE_INIT)))
            sigma2 = per_sample_grads(W0, b0, V0, x0, y0).var(0, unbiased=True)
        for lr in t.lr:
            for bs in t.batch_size:
                theta = torch.cat([W0.flatten(), b0, V0])
                for step in range(t.steps):
                    W, b, V = theta[:12].view(4, 3), theta[12:16], theta[16:]
                    grads = per_sample_grads(W, b, V, xs[step], ys[step])
                    xi = 0.0
                    if noise == "gaussian":
                        xi = (z[step, :, None] * (grads - grads.mean(0))).sum(0) / math.sqrt(bs * (G - 1))
                    elif noise == "frozen":
                        xi = (sigma2 / bs).sqrt() * z[step]
                    theta = theta - lr * (grads.mean(0) + xi)
                got = ds.sel(lr=lr, batch_size=bs, seed=seed).isel(step=-1)
                np.testing.assert_allclose(float(got.v_norm), float(theta[16:].norm()), rtol=1e-10)
                np.testing.assert_allclose(float(got.bias_mean), float(theta[12:16].mean()), rtol=1e-10)
                np.testing.assert_allclose(float(got.w_norm), float(theta[:12].norm()), rtol=1e-10)


@pytest.mark.parametrize("noise", ["gaussian", "frozen"])
def test_streams_do_not_depend_on_seed_blocks_or_run_length(noise):
    cfg = _cfg(noise, seeds=[0, 1, 2], steps=40, record_every=10, gd_batch=8)
    whole = train(cfg)
    part = train(cfg, seeds=[2])
    np.testing.assert_array_equal(whole.sel(seed=[2]).v_norm.values, part.v_norm.values)
    short = train(cfg.replace(train={"steps": 20}))
    np.testing.assert_array_equal(short.v_norm.values, whole.sel(step=short.step).v_norm.values)


def test_unshared_noise_differs_per_replica_and_shared_noise_does_not():
    cfg = _cfg("gaussian", lr=[0.1, 0.1 + 1e-12], batch_size=[1], steps=30, record_every=10)
    shared = train(cfg)
    np.testing.assert_allclose(shared.v_norm.isel(lr=0).values, shared.v_norm.isel(lr=1).values, rtol=1e-9)
    own = train(cfg.replace(train={"share_data": False}))
    assert not np.allclose(own.v_norm.isel(lr=0).values, own.v_norm.isel(lr=1).values)


@pytest.mark.parametrize("bad", [{"noise": "langevin"}, {"gd_batch": 1}, {"gd_batch": 0}])
def test_noise_config_is_validated(bad):
    from thermosgd.errors import UsageError

    with pytest.raises(UsageError, match="noise|gd_batch"):
        from_dict({"train": bad})


def test_seed_blocks_give_the_same_results(monkeypatch):
    import thermosgd.twolayer.engine as engine

    cfg = _cfg("frozen", seeds=[0, 1, 2], steps=12, record_every=4, gd_batch=8)
    whole = train(cfg)
    monkeypatch.setattr(engine, "_BLOCK_ENTRIES", 1)  # one seed per block
    blocked = train(cfg)
    for name in ("v_norm", "w_norm", "bias_mean", "activation_rate"):
        np.testing.assert_array_equal(blocked[name].values, whole[name].values, err_msg=name)
