"""The ensemble engine against torch.autograd and against closed forms."""

import math

import numpy as np
import pytest
import torch

from thermosgd.config import from_dict
from thermosgd.twolayer.data import INIT, SampleStream, generator
from thermosgd.twolayer.engine import _CHUNK, train
from thermosgd.twolayer.measure import probe_metrics
from thermosgd.twolayer.params import Params, init_params
from thermosgd.twolayer.steps import sgd_step


def _autograd_step(W, b, V, x, y, lr, bs, loss, bias=True):
    """Slow twin: one replica, plain autograd on the mean minibatch loss (Eq. 13)."""
    W, b, V = (t.clone().requires_grad_(True) for t in (W, b, V))
    f = torch.relu(x[:bs] @ W.T + b) @ V
    if loss == "bce":
        ell = torch.nn.functional.binary_cross_entropy_with_logits(f, y[:bs])
    else:
        ell = 0.5 * ((f - y[:bs]) ** 2).mean()
    ell.backward()
    with torch.no_grad():
        return W - lr * W.grad, (b - lr * b.grad) if bias else b, V - lr * V.grad


@pytest.mark.parametrize("loss", ["bce", "mse"])
@pytest.mark.parametrize("bias", [True, False])
def test_sgd_step_matches_autograd(loss, bias):
    g = torch.Generator().manual_seed(1)
    R, B, N, M = 6, 3, 5, 4
    W = torch.randn(R, N, M, generator=g, dtype=torch.float64)
    b = torch.randn(R, N, generator=g, dtype=torch.float64) if bias else torch.zeros(R, N, dtype=torch.float64)
    V = torch.randn(R, N, generator=g, dtype=torch.float64)
    x = torch.randn(R, B, M, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (R, B), generator=g).double()
    lrs = [0.01, 0.1, 0.5, 0.05, 0.2, 1.0]
    bss = [1, 2, 3, 3, 2, 1]
    wl = torch.zeros(R, B, dtype=torch.float64)
    for r in range(R):
        wl[r, : bss[r]] = lrs[r] / bss[r]
    expect = [_autograd_step(W[r], b[r], V[r], x[r], y[r], lrs[r], bss[r], loss, bias) for r in range(R)]
    r2 = W.pow(2).sum(-1)
    sgd_step(W, b, V, x, y, wl, loss, bias, row_norms2=r2)
    torch.testing.assert_close(r2, W.pow(2).sum(-1), rtol=1e-12, atol=1e-12)  # running ‖W_i‖²
    for r in range(R):
        torch.testing.assert_close(W[r], expect[r][0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(b[r], expect[r][1], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(V[r], expect[r][2], rtol=1e-12, atol=1e-12)


def _cfg(**train):
    # The torch reference backend unless a test asks for the compiled one (its twin tests: test_fused.py).
    base = {"lr": [0.05, 0.1], "batch_size": [1, 3], "seeds": [0, 1], "steps": 40, "dtype": "float64", "fused": False}
    base.update(train)
    return from_dict({"model": {"inputs": 4, "hidden": 5}, "train": base})


@pytest.mark.parametrize("fused", [False, True])
def test_whole_run_matches_plain_loop(fused):
    """Every replica of an ensemble run, on either backend, equals a one-run-at-a-time autograd loop on the
    same data."""
    cfg = _cfg(record_every=40, fused=fused)
    ds = train(cfg)
    t = cfg.train
    for seed in t.seeds:
        W0, b0, V0 = init_params(cfg, generator(t.seed, seed, INIT), torch.float64)
        stream = SampleStream(cfg, t.seed, seed, dtype=torch.float64)
        xs, ys = stream.batches(_CHUNK, max(t.batch_size))  # the engine draws whole chunks
        for lr in t.lr:
            for bs in t.batch_size:
                W, b, V = W0, b0, V0
                for step in range(t.steps):
                    W, b, V = _autograd_step(W, b, V, xs[step], ys[step], lr, bs, "bce")
                got = ds.sel(lr=lr, batch_size=bs, seed=seed).isel(step=-1)
                np.testing.assert_allclose(float(got.v_norm), float(V.norm()), rtol=1e-10)
                np.testing.assert_allclose(float(got.bias_mean), float(b.mean()), rtol=1e-10)
                np.testing.assert_allclose(float(got.w_norm), float(W.norm()), rtol=1e-10)


def test_exact_activation_rate_matches_monte_carlo():
    """Φ(b/‖W‖) (Gaussian inputs) against a direct count over 200k Gaussian samples.

    Tolerance: 4 standard errors of a Bernoulli mean over 2e5·N draws (seed 3).
    """
    cfg = _cfg(steps=50, record_every=50)
    ds = train(cfg)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(200_000, 4, generator=g, dtype=torch.float64)
    t = cfg.train
    W0, b0, _ = init_params(cfg, generator(t.seed, 0, INIT), torch.float64)
    exact = torch.special.ndtr(b0 / W0.norm(dim=-1)).mean()
    counted = ((x @ W0.T + b0) > 0).double().mean()
    assert abs(float(exact) - float(counted)) < 4 * math.sqrt(0.25 / (200_000 * 5))
    np.testing.assert_allclose(ds.activation_rate.isel(step=0).sel(seed=0).values, float(exact), rtol=1e-12)


def test_monte_carlo_activation_rate_is_a_direct_count_on_the_probe_set():
    """Non-Gaussian inputs: the engine's activation rate equals counting active units on its probe set."""
    cfg = _cfg(steps=30, record_every=10).replace(data={"inputs": "uniform", "probe_size": 64})
    ds = train(cfg)
    t = cfg.train
    for seed in t.seeds:
        W, b, _ = init_params(cfg, generator(t.seed, seed, INIT), torch.float64)
        px, _ = SampleStream(cfg, t.seed, seed, dtype=torch.float64).probe()
        count = sum(float(px[i] @ W[j] + b[j] > 0) for i in range(64) for j in range(W.shape[0])) / (64 * W.shape[0])
        got = ds.activation_rate.isel(step=0).sel(seed=seed).values
        np.testing.assert_allclose(got, count, rtol=1e-12)


@pytest.mark.parametrize("data", [{}, {"inputs": "uniform"}, {"labels": "teacher"}, {"train_size": 30}])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_samples_drawn_into_buffers_are_the_samples_of_batches(data, dtype):
    """The engine's in-place draw (one buffer for all streams) gives the very numbers of ``batches``."""
    cfg = from_dict({"model": {"inputs": 4, "hidden": 5}, "data": data})
    a, b = (SampleStream(cfg, 3, 1, dtype=dtype) for _ in range(2))
    for steps, batch in ((7, 3), (256, 1)):
        xs, ys = a.batches(steps, batch)
        x, y = torch.full((steps * batch, 4), float("nan"), dtype=dtype), torch.empty(steps * batch, dtype=dtype)
        b.batches_into(x, y)
        assert torch.equal(x.view(steps, batch, 4), xs) and torch.equal(y.view(steps, batch), ys)


def test_first_steps_do_not_depend_on_the_run_length():
    cfg = _cfg(steps=300, record_every=10)
    short = train(cfg.replace(train={"steps": 100}))
    longer = train(cfg).sel(step=short.step)
    for name in ("v_norm", "w_norm", "activation_rate"):
        np.testing.assert_array_equal(short[name].values, longer[name].values)


def test_probe_gradient_variance_matches_per_sample_loop():
    """The closed-form per-sample variance equals a loop over samples with autograd."""
    g = torch.Generator().manual_seed(5)
    R, P, N, M = 3, 17, 4, 3
    W = torch.randn(R, N, M, generator=g, dtype=torch.float64)
    b = torch.randn(R, N, generator=g, dtype=torch.float64)
    V = torch.randn(R, N, generator=g, dtype=torch.float64)
    px = torch.randn(R, P, M, generator=g, dtype=torch.float64)
    py = torch.randint(0, 2, (R, P), generator=g).double()
    bsz = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    out = probe_metrics(Params(W, b, V), px, py, bsz, loss="bce", bias=True, need_grads=True, exact_rate=True)
    for r in range(R):
        grads = {"W": [], "b": [], "V": []}
        for i in range(P):
            w_, b_, v_ = (t.clone().requires_grad_(True) for t in (W[r], b[r], V[r]))
            f = torch.relu(w_ @ px[r, i] + b_) @ v_
            torch.nn.functional.binary_cross_entropy_with_logits(f, py[r, i]).backward()
            grads["W"].append(w_.grad.flatten())
            grads["b"].append(b_.grad)
            grads["V"].append(v_.grad)
        per = {k: torch.stack(v).var(0, unbiased=True).mean() / bsz[r] for k, v in grads.items()}
        allg = torch.cat([torch.stack(grads[k]) for k in ("W", "b", "V")], 1)
        np.testing.assert_allclose(float(out["grad_var_W"][r]), float(per["W"]), rtol=1e-10)
        np.testing.assert_allclose(float(out["grad_var_b"][r]), float(per["b"]), rtol=1e-10)
        np.testing.assert_allclose(float(out["grad_var_V"][r]), float(per["V"]), rtol=1e-10)
        np.testing.assert_allclose(float(out["grad_var"][r]), float(allg.var(0).mean() / bsz[r]), rtol=1e-10)


def test_shared_init_and_data_make_replicas_differ_only_by_hyperparameter():
    cfg = _cfg(lr=[0.05, 0.05 + 1e-12], batch_size=[2], record_every=10)
    ds = train(cfg)
    a, b = ds.v_norm.isel(lr=0), ds.v_norm.isel(lr=1)
    np.testing.assert_allclose(a.values, b.values, rtol=1e-9)
    # Different seeds really differ.
    assert not np.allclose(ds.v_norm.isel(lr=0, seed=0).values, ds.v_norm.isel(lr=0, seed=1).values)


def test_running_row_norms_match_recomputed_ones():
    """record_every=1 tracks ‖W_i‖ incrementally; it must agree with a pass over W."""
    cfg = _cfg(steps=300, batch_size=[1, 3], record_every=1)
    every_step = train(cfg)
    sparse = train(cfg.replace(train={"record_every": 50}))
    dense = every_step.sel(step=sparse.step)
    for name in ("w_norm", "activation_rate"):
        np.testing.assert_allclose(dense[name].values, sparse[name].values, rtol=1e-10)


def test_seed_blocks_give_the_same_results(monkeypatch):
    """Large grids run in blocks of seeds (cache); the results must not change."""
    import thermosgd.twolayer.engine as engine

    cfg = _cfg(seeds=[0, 1, 2, 3, 4], record_every=10)
    whole = train(cfg)
    monkeypatch.setattr(engine, "_BLOCK_ENTRIES", 2 * (2 * 2 * 5 * 4))  # two seeds (80 W entries each) per block
    blocked = train(cfg)
    assert list(blocked.seed.values) == [0, 1, 2, 3, 4]
    for name in whole.data_vars:
        np.testing.assert_allclose(blocked[name].values, whole[name].values, rtol=1e-12, err_msg=name)
    assert blocked.attrs == whole.attrs


def test_unshared_streams_differ_per_replica():
    cfg = _cfg(lr=[0.05, 0.05 + 1e-12], batch_size=[2], record_every=10, share_data=False, share_init=False)
    ds = train(cfg)
    assert not np.allclose(ds.v_norm.isel(lr=0).values, ds.v_norm.isel(lr=1).values)


def test_results_do_not_depend_on_which_seeds_train_together():
    cfg = _cfg(seeds=[0, 1, 2], record_every=20)
    whole = train(cfg)
    part = train(cfg, seeds=[2])
    np.testing.assert_allclose(whole.sel(seed=[2]).v_norm.values, part.v_norm.values, rtol=1e-12)


def test_divergence_is_marked_and_others_kept():
    cfg = from_dict(
        {
            "model": {"inputs": 5, "hidden": 5, "init_scale": 3.0},
            "train": {"loss": "mse", "lr": [0.01, 50.0], "seeds": 2, "steps": 200, "record_every": 5},
        }
    )
    ds = train(cfg)
    assert ds.diverged.sel(lr=50.0).all()
    assert not ds.diverged.sel(lr=0.01).any()
    assert np.isfinite(ds.v_norm.sel(lr=0.01).values).all()
    assert np.isnan(ds.v_norm.sel(lr=50.0).isel(step=-1).values).all()
    assert (ds.diverged_step.sel(lr=50.0).values > 0).all()


def test_dataset_layout():
    ds = train(_cfg(steps=25, record_every=10))
    assert ds["activation_rate"].dims == ("lr", "batch_size", "seed", "step")
    assert list(ds.step.values) == [0, 10, 20, 25]
    for name in ("activation_rate", "v_norm", "bias_mean", "loss", "grad_var_V", "grad_var_W", "grad_var_b"):
        assert name in ds
    assert np.isfinite(ds.loss.values).all()


def test_teacher_task_is_learnable():
    """On a teacher task, training error falls well below chance (seed 0; 2000 steps)."""
    cfg = from_dict(
        {
            "model": {"inputs": 5, "hidden": 20},
            "data": {"labels": "teacher", "train_size": 400, "test_size": 400},
            "train": {"lr": [0.2], "batch_size": [8], "seeds": 1, "steps": 2000, "record_every": 2000},
        }
    )
    ds = train(cfg)
    assert float(ds.error.isel(step=0).squeeze()) > 0.25
    assert float(ds.error.isel(step=-1).squeeze()) < 0.15
    assert float(ds.test_error.isel(step=-1).squeeze()) < 0.25


@pytest.mark.parametrize("inputs", ["gaussian", "uniform"])
def test_control_samples_in_float64_are_the_float32_draws_widened(inputs):
    """The G-sample noise models draw their fresh samples in float32 (4x faster than torch's float64
    sampler) from the same generators: a float64 run sees exactly the float32 run's samples."""
    from thermosgd.twolayer.engine import _Data

    def chunk(noise, dtype):
        cfg = from_dict(
            {
                "model": {"inputs": 3, "hidden": 2},
                "data": {"inputs": inputs},
                "train": {"noise": noise, "gd_batch": 8, "seeds": 2, "lr": [0.1, 0.2], "dtype": dtype},
            }
        )
        dt = torch.float64 if dtype == "float64" else torch.float32
        return _Data(cfg, [0, 1], None, dt).chunk(3, 8, 4)

    x64, y64 = chunk("gd", "float64")
    x32, y32 = chunk("gd", "float32")
    assert x64.dtype == torch.float64 and y64.dtype == torch.float64
    torch.testing.assert_close(x64, x32.double(), rtol=0, atol=0)
    torch.testing.assert_close(y64, y32.double(), rtol=0, atol=0)
    xs, _ = chunk("sgd", "float64")  # plain SGD keeps its float64 stream
    assert not torch.equal(xs, x64)
