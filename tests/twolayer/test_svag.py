"""SVAG (``[train] svag = l``) against its closed form and against a per-sample loop twin.

Statistical tests draw D updates at a fixed θ from a fixed seed and compare
the empirical mean and covariance with the closed form, each entry within 5
standard errors estimated from the draws themselves (the updates of "sgd" are
not Gaussian, so the Gaussian formula for the error of a covariance would not do).
"""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from thermosgd.config import from_dict
from thermosgd.errors import UsageError
from thermosgd.twolayer.data import INIT, NOISE, NOISE_INIT, SampleStream, generator
from thermosgd.twolayer.engine import _CHUNK, train
from thermosgd.twolayer.params import init_params
from thermosgd.twolayer.steps import gaussian_step, minibatch_weights, sgd_step, svag_coefficients

F64 = torch.float64


def _load(name):
    """A test module beside this file (tests are not a package under --import-mode=importlib)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NOISE_TESTS = _load("test_noise")  # per_sample_grads (autograd, one sample at a time), _state, _clones, _flat


def _standardized_errors(u: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> tuple[float, float]:
    """Largest |empirical − exact| / standard error of the mean and of the covariance of the rows of u (D, P)."""
    D = u.shape[0]
    m = u.mean(0)
    mean_err = ((m - mean).abs() / (cov.diagonal() / D).sqrt()).max().item()
    c = u - m
    prod = c.unsqueeze(2) * c.unsqueeze(1)  # (D, P, P): one draw of each covariance entry
    se = prod.std(0) / math.sqrt(D)
    return mean_err, ((prod.mean(0) - cov).abs() / se).max().item()


@pytest.mark.parametrize("svag", [1, 2, 5, 50])
def test_coefficients_keep_the_mean_and_multiply_the_variance(svag):
    c1, c2 = svag_coefficients(svag)
    assert c1 + c2 == pytest.approx(1.0, abs=1e-14)
    assert c1 * c1 + c2 * c2 == pytest.approx(svag, rel=1e-14)


@pytest.mark.parametrize("svag", [2, 7])
def test_one_sgd_update_has_the_closed_form_moments(svag):
    """D = 100 000 updates at fixed θ, two minibatches of |B| = 2 drawn with replacement from n = 6
    samples; tiny net N = 3, M = 2 (P = 12), seed 11.

    Closed form: mean −(η/l) ḡ (c₁ + c₂ = 1), covariance (η/l)²(c₁² + c₂²) Σ/|B| = (η²/l) Σ/|B|,
    with ḡ, Σ the mean and (population) covariance of the n per-sample gradients.
    """
    W, b, V = NOISE_TESTS._state(11)
    n, B, lr, D = 6, 2, 0.1, 100_000
    gen = torch.Generator().manual_seed(12)
    X = torch.randn(n, 2, generator=gen, dtype=F64)
    Y = torch.randint(0, 2, (n,), generator=gen).double()
    grads = NOISE_TESTS.per_sample_grads(W, b, V, X, Y)  # (n, P)
    mean, sigma = grads.mean(0), torch.cov(grads.T, correction=0)
    idx = torch.randint(0, n, (D, 2 * B), generator=gen)
    Wc, bc, Vc = NOISE_TESTS._clones(D, W, b, V)
    sgd_step(Wc, bc, Vc, X[idx], Y[idx], minibatch_weights([lr], [B], D, F64, svag), "bce")
    u = NOISE_TESTS._flat(W[None], b[None], V[None]) - NOISE_TESTS._flat(Wc, bc, Vc)  # (D, P) = (η/l)(c₁ĝ₁ + c₂ĝ₂)
    cov = lr * lr / svag * sigma / B
    mean_err, cov_err = _standardized_errors(u, lr / svag * mean, cov)
    assert mean_err < 5 and cov_err < 5
    # The test has power: a plain step of size η/l (covariance l times smaller) is rejected by far.
    assert _standardized_errors(u, lr / svag * mean, cov / svag)[1] > 50


def test_one_gaussian_update_has_the_closed_form_moments():
    """D = 50 000 draws at fixed θ and G = 12 samples, l = 4: η → η/l and |B| → |B|/l give mean −(η/l)ḡ
    and covariance (η²/l) Σ̂/|B|, Σ̂ the unbiased per-sample-gradient covariance; seed 7."""
    svag, G, D, lr, B = 4, 12, 50_000, 0.1, 2.0
    W, b, V = NOISE_TESTS._state(7)
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(G, 2, generator=gen, dtype=F64)
    y = torch.randint(0, 2, (G,), generator=gen).double()
    grads = NOISE_TESTS.per_sample_grads(W, b, V, x, y)
    Wc, bc, Vc = NOISE_TESTS._clones(D, W, b, V)
    z = torch.randn(D, G, generator=gen, dtype=F64)
    lrs, bss = torch.full((D,), lr / svag, dtype=F64), torch.full((D,), B / svag, dtype=F64)
    gaussian_step(Wc, bc, Vc, x.expand(D, G, 2), y.expand(D, G), lrs, bss, z, "bce")
    u = NOISE_TESTS._flat(W[None], b[None], V[None]) - NOISE_TESTS._flat(Wc, bc, Vc)
    cov = lr * lr / svag * torch.cov(grads.T) / B
    mean_err, cov_err = _standardized_errors(u, lr / svag * grads.mean(0), cov)
    assert mean_err < 5 and cov_err < 5
    assert _standardized_errors(u, lr / svag * grads.mean(0), cov / svag)[1] > 50


def _cfg(noise, **train):
    return NOISE_TESTS._cfg(noise, **{"steps": 4, "record_every": 2, "gd_batch": 8, "svag": 3, **train})


def _twin_updates(cfg, seed: int, noise: str):
    """Per replica (lr, |B|): a function update(θ, u) → θ after SVAG update u, from the documented streams."""
    t, G, l_ = cfg.train, cfg.train.gd_batch, cfg.train.svag
    W0, b0, V0 = init_params(cfg, generator(t.seed, seed, INIT), F64)
    # "sgd" draws in the run's dtype; the G-sample models draw fresh samples in float32 (Gaussian
    # inputs from Philox) and widen them.
    stream = SampleStream(
        cfg, t.seed, seed, dtype=F64 if noise == "sgd" else torch.float32, counter_inputs=noise != "sgd"
    )
    c1, c2 = svag_coefficients(l_)
    if noise == "sgd":
        Bmax = max(t.batch_size)
        xs, ys = stream.batches(_CHUNK, 2 * Bmax)  # two minibatches per update, one chunk as the engine
    else:
        chunk = min(_CHUNK, (1 << 18) // (G * cfg.model.inputs))
        xs, ys = (v.double() for v in stream.batches(chunk, G))
        P = W0.numel() + 2 * b0.numel()
        z = torch.randn(chunk, G if noise == "gaussian" else P, generator=generator(t.seed, seed, NOISE), dtype=F64)
    if noise == "frozen":
        x0, y0 = (v.double() for v in stream.draw(G, generator(t.seed, seed, NOISE_INIT)))
        sigma2 = NOISE_TESTS.per_sample_grads(W0, b0, V0, x0, y0).var(0, unbiased=True)

    def update(theta, u, lr, bs):
        W, b, V = theta[:12].view(4, 3), theta[12:16], theta[16:]
        if noise == "sgd":
            g1 = NOISE_TESTS.per_sample_grads(W, b, V, xs[u, :bs], ys[u, :bs]).mean(0)
            g2 = NOISE_TESTS.per_sample_grads(W, b, V, xs[u, Bmax : Bmax + bs], ys[u, Bmax : Bmax + bs]).mean(0)
            return theta - lr / l_ * (c1 * g1 + c2 * g2)
        grads = NOISE_TESTS.per_sample_grads(W, b, V, xs[u], ys[u])
        xi = 0.0  # the noise of one step at η and |B|, times √l_
        if noise == "gaussian":
            xi = (z[u, :, None] * (grads - grads.mean(0))).sum(0) / math.sqrt(bs * (G - 1))
        elif noise == "frozen":
            xi = (sigma2 / bs).sqrt() * z[u]
        return theta - lr / l_ * (grads.mean(0) + math.sqrt(l_) * xi)

    return torch.cat([W0.flatten(), b0, V0]), update


@pytest.mark.parametrize("noise", ["sgd", "gd", "gaussian", "frozen"])
@pytest.mark.parametrize("fused", [False, True])
def test_engine_run_matches_a_per_sample_loop(noise, fused):
    """l_ = 3: 12 updates of η/l_ for 4 configured steps, recorded at configured steps 0, 2, 4 (updates 0, 6, 12)."""
    cfg = _cfg(noise, fused=fused)
    ds = train(cfg)
    t, l_ = cfg.train, cfg.train.svag
    np.testing.assert_array_equal(ds.step.values, [0, 2, 4])
    rtol = 1e-9 if fused else 1e-10
    for seed in t.seeds:
        theta0, update = _twin_updates(cfg, seed, noise)
        for lr in t.lr:
            for bs in t.batch_size:
                theta = theta0
                got = ds.sel(lr=lr, batch_size=bs, seed=seed)
                for u in range(l_ * t.steps):
                    theta = update(theta, u, lr, bs)
                    if (u + 1) % (l_ * t.record_every) == 0:
                        at = got.sel(step=(u + 1) // l_)
                        np.testing.assert_allclose(float(at.v_norm), float(theta[16:].norm()), rtol=rtol)
                        np.testing.assert_allclose(float(at.bias_mean), float(theta[12:16].mean()), rtol=rtol)
                        np.testing.assert_allclose(float(at.w_norm), float(theta[:12].norm()), rtol=rtol)


def test_curves_for_different_l_share_one_step_axis():
    cfg = _cfg("gaussian", steps=6, record_every=3, probe_every=6)
    for svag in (1, 2, 5):
        ds = train(cfg.replace(train={"svag": svag}))
        np.testing.assert_array_equal(ds.step.values, [0, 3, 6])
        assert np.isfinite(ds.loss.sel(step=6).values).all() and np.isnan(ds.loss.sel(step=3).values).all()


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_svag_is_validated(bad):
    with pytest.raises(UsageError, match="svag"):
        from_dict({"train": {"svag": bad}})


def test_svag_beyond_the_step_limit_is_refused():
    with pytest.raises(UsageError, match="svag"):
        from_dict({"train": {"steps": 1_000_000, "svag": 10**9}})
