"""The ensemble against its twin, the sequential loop: same seeds, same curves to tolerance.

Float32 training of the same runs in another summation order drifts apart by
rounding only; over these short runs every recorded value agrees to rtol 1e-4
(measured: ≤ 2e-5), except counts (activation rates), where a unit sitting on the
ReLU threshold may flip: atol = one unit-sample of the probe set.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from thermosgd.deep.ensemble import Ensemble, output_gradient, replica_losses
from thermosgd.deep.models import cnn, mlp, two_layer
from thermosgd.instruments import (
    activation_rates,
    every,
    gradient_variance,
    hessian_trace_bound,
    log_spaced,
    weight_norms,
)
from thermosgd.instruments.activations import replica_activation_rates
from thermosgd.instruments.gradient_variance import replica_gradient_variance_batched
from thermosgd.instruments.hessian import _mlp_layers, stacked_trace_bound
from thermosgd.instruments.norms import replica_weight_norms


def _load_loops():
    spec = importlib.util.spec_from_file_location("deep_sgd_loops", Path(__file__).parent / "sgd_loops.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


T = _load_loops()  # the sequential twin and the ensemble loop (tests only)
Run, TrainSet, train_sweep = T.Run, T.TrainSet, T.train_sweep
RTOL = 1e-4


def _preset_setup(model, *, seeds, lrs, batch_sizes, steps, points, n_train, probe_size):
    """A deep preset's model family on a small set: Gaussian inputs with BCE (mlp), digits with
    cross-entropy (cnn, two-layer); instruments on the first ``probe_size`` samples."""
    from thermosgd.data import load_dataset

    if model == "mlp":
        gen = torch.Generator().manual_seed(2)
        x = torch.randn(n_train, 100, generator=gen)
        y = (torch.randperm(n_train, generator=gen) < n_train // 2).float().unsqueeze(1)
        data, loss_fn = TrainSet(x, y), nn.BCEWithLogitsLoss()
    else:
        images = load_dataset("digits", None, split="train")
        data = TrainSet(torch.from_numpy(images.images[:n_train]), torch.from_numpy(images.labels[:n_train]), 1 / 16)
        loss_fn = nn.CrossEntropyLoss()
    build = {
        "mlp": lambda s: mlp(100, 100, 6, 1, seed=s),
        "cnn": lambda s: cnn(1, 8, 10, seed=s, padding=2),
        "two-layer": lambda s: two_layer(64, 300, 10, seed=s),
    }[model]

    def setup(seed):
        xp, yp = data.batch(torch.arange(probe_size))
        tools = {
            "loss": lambda m: _probe_loss(m, loss_fn, xp, yp),
            "activation_rate": lambda m: activation_rates(m, xp),
            "grad_var": lambda m: gradient_variance(m, loss_fn, xp, yp),
        }
        if model == "two-layer":
            tools["v_norm"] = lambda m: weight_norms(m).last
        if model != "cnn":
            tools["trace_bound"] = lambda m: hessian_trace_bound(m, loss_fn, xp)
        return Run(build(seed), data, tools)

    kwargs = dict(
        lrs=lrs,
        batch_sizes=batch_sizes,
        seeds=range(seeds),
        steps=steps,
        schedule=log_spaced(steps, points),
        progress=False,
    )
    return setup, loss_fn, kwargs


def _probe_loss(model, loss_fn, x, y) -> float:
    with torch.no_grad():
        return float(loss_fn(model(x), y))


def _assert_close(a, b, probe_units=None):
    assert sorted(a.data_vars) == sorted(b.data_vars)
    np.testing.assert_array_equal(a["diverged"].values, b["diverged"].values)
    for name in a.data_vars:
        if name == "diverged":
            continue
        atol = 1.5 / probe_units if name.startswith("activation_rate") and probe_units else 0.0
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=RTOL, atol=atol, err_msg=name)


@pytest.mark.parametrize("batched", [True, False], ids=["by hand", "vmap"])
def test_fig2_middle_ensemble_equals_sequential(batched, monkeypatch):
    """6-layer MLP, BCE: the hand-written backward (and the vmap path) against torch.optim.SGD."""
    setup, loss_fn, kw = _preset_setup(
        "mlp", seeds=2, lrs=(0.05, 0.1), batch_sizes=(1,), steps=80, points=8, n_train=64, probe_size=16
    )
    if not batched:
        real = T.train_ensemble
        monkeypatch.setattr(T, "train_ensemble", lambda *a, **k: real(*a, **k, batched=False))
    seq = train_sweep(setup, loss_fn, ensemble=False, **kw)
    ens = train_sweep(setup, loss_fn, ensemble=True, **kw)
    _assert_close(ens, seq, probe_units=16 * 500)
    assert ens.sizes["step"] > 5 and np.isfinite(ens["grad_var"]).all()


@pytest.mark.parametrize("name", ["fig2-bottom", "fig11", "fig13"])
def test_image_presets_ensemble_equals_sequential(name):
    """CNN (grouped convolution, autograd backward), two-layer with cross-entropy, a |B| sweep."""
    setup, loss_fn, kw = _preset_setup(
        "cnn" if name == "fig2-bottom" else "two-layer",
        seeds=2,
        lrs={"fig2-bottom": (0.025, 0.05, 0.1), "fig11": (0.01, 0.02, 0.04), "fig13": (0.02,)}[name],
        steps=6 if name == "fig2-bottom" else 12,
        points=3,
        n_train=64,
        probe_size=8,
        batch_sizes=(4, 8) if name == "fig13" else (4,),
    )
    seq = train_sweep(setup, loss_fn, ensemble=False, **kw)
    ens = train_sweep(setup, loss_fn, ensemble=True, **kw)
    _assert_close(ens, seq, probe_units=8 * 10)


def _toy_setup(seed):
    gen = torch.Generator().manual_seed(seed)
    data = TrainSet(torch.randn(32, 3, generator=gen), torch.randint(0, 2, (32, 1), generator=gen).float())
    return Run(mlp(3, 4, 2, 1, seed=seed), data, {"w": lambda m: weight_norms(m).value})


def test_divergence_custom_loss_and_custom_instruments_match():
    """A diverging lr, a loss the ensemble does not know (autograd for its derivative, vmap
    for its value) and a plain lambda instrument (measured on per-replica modules)."""

    def loss_fn(out, y):
        return ((torch.sigmoid(out) - y) ** 2).mean() + 0.01 * out.abs().mean()

    kw = dict(lrs=(0.1, 1e30), batch_sizes=(2, 4), seeds=(0, 1), steps=8, schedule=every(1), progress=False)
    seq = train_sweep(_toy_setup, loss_fn, ensemble=False, **kw)
    ens = train_sweep(_toy_setup, loss_fn, ensemble=True, **kw)
    _assert_close(ens, seq)
    assert ens["diverged"].sel(lr=1e30).all() and not ens["diverged"].sel(lr=0.1).any()


def _replicas(build, n=4):
    return [build(seed) for seed in range(n)]


def _trained_replicas(arch):
    """Four replicas of ``arch`` after three ensemble steps at different rates (so they
    differ), each replica's own module, its loss and per-replica probe batches."""
    gen = torch.Generator().manual_seed(0)
    if arch == "mlp":
        models, loss_fn = _replicas(lambda s: mlp(12, 9, 4, 1, seed=s)), nn.BCEWithLogitsLoss()
        x = torch.randn(4, 10, 12, generator=gen)
        y = torch.randint(0, 2, (4, 10, 1), generator=gen).float()
    elif arch == "cnn":
        models, loss_fn = (
            _replicas(lambda s: cnn(1, 8, 3, seed=s, channels=3, kernel_size=3, conv_layers=2, padding=1)),
            nn.CrossEntropyLoss(),
        )
        x = torch.randn(4, 6, 1, 8, 8, generator=gen)
        y = torch.randint(0, 3, (4, 6), generator=gen)
    else:
        models, loss_fn = _replicas(lambda s: two_layer(12, 7, 3, seed=s)), nn.CrossEntropyLoss(reduction="sum")
        x = torch.randn(4, 10, 12, generator=gen)
        y = torch.randint(0, 3, (4, 10), generator=gen)
    ens = Ensemble(models)
    lr = torch.tensor([0.5, 0.2, 0.1, 0.05])
    for _ in range(3):
        ens.step(loss_fn, x, y, lr, torch.ones(4, dtype=torch.bool))
    return ens, [ens.load_into(m, e) for e, m in enumerate(models)], loss_fn, x, y


def _close(got: dict, want: dict, what: str) -> None:
    assert list(got) == list(want), what
    np.testing.assert_allclose(list(got.values()), list(want.values()), rtol=1e-5, err_msg=what)


@pytest.mark.parametrize("arch", ["mlp", "cnn", "two-layer"])
def test_replica_instruments_on_an_ensemble_equal_the_module_instruments(arch):
    """The replica instruments the study engine runs on an ensemble (loss, activation rates,
    weight norms, gradient variance on the batched layers, the Eq. 62 trace bound), replica
    by replica, against the instrument of thermosgd.instruments on that replica's own module
    after some training. float32; rtol 1e-5."""
    ens, mods, loss_fn, x, y = _trained_replicas(arch)
    assert ens.layers is not None  # the hand-batched layers, as the engine uses them
    with torch.no_grad():
        losses = ens.losses(loss_fn, x, y)
    rate, rate_layer = replica_activation_rates(ens.template, ens.params, ens.buffers, x)
    norm, norm_layer = replica_weight_norms(ens.template, ens.params)
    var, var_layer = replica_gradient_variance_batched(ens, loss_fn, x, y)
    for e, m in enumerate(mods):
        np.testing.assert_allclose(float(losses[e]), _probe_loss(m, loss_fn, x[e], y[e]), rtol=1e-5)
        want_rate = activation_rates(m, x[e])
        np.testing.assert_allclose(float(rate[e]), want_rate.value, rtol=1e-5)
        _close({k: float(v[e]) for k, v in rate_layer.items()}, want_rate.per_layer, f"rates {e}")
        want_norm = weight_norms(m)
        np.testing.assert_allclose(float(norm[e]), want_norm.value, rtol=1e-5)
        _close({k: float(v[e]) for k, v in norm_layer.items()}, want_norm.per_layer, f"norms {e}")
        np.testing.assert_allclose(float(list(norm_layer.values())[-1][e]), want_norm.last, rtol=1e-5)
        want_var = gradient_variance(m, loss_fn, x[e], y[e])
        np.testing.assert_allclose(float(var[e]), want_var.value, rtol=1e-5)
        _close({k: float(v[e]) for k, v in var_layer.items()}, want_var.per_layer, f"grad var {e}")


@pytest.mark.parametrize("arch", ["mlp", "two-layer"])
def test_stacked_trace_bound_on_an_ensemble_equals_the_module_bound(arch):
    """stacked_trace_bound from an ensemble's stacked weights (as the study engine calls it)
    against hessian_trace_bound on each replica's module: per sample and reduced. rtol 1e-5."""
    ens, mods, loss_fn, x, _ = _trained_replicas(arch)
    names = {id(m): name for name, m in ens.template.named_modules()}
    linears = _mlp_layers(ens.template)
    weights = [ens.params[f"{names[id(m)]}.weight"] for m in linears]
    biases = [ens.params.get(f"{names[id(m)]}.bias") for m in linears]
    per_sample = stacked_trace_bound(loss_fn, x.reshape(ens.size, x.shape[1], -1), weights, biases)
    values = per_sample.sum(1) if loss_fn.reduction == "sum" else per_sample.mean(1)
    for e, m in enumerate(mods):
        want = hessian_trace_bound(m, loss_fn, x[e])
        np.testing.assert_allclose(float(values[e]), want.value, rtol=1e-5)
        np.testing.assert_allclose(per_sample[e].numpy(), want.per_sample.double().numpy(), rtol=1e-5)


@pytest.mark.parametrize(
    "loss_fn, target",
    [
        (nn.BCEWithLogitsLoss(), "binary"),
        (nn.BCEWithLogitsLoss(reduction="sum"), "binary"),
        (nn.CrossEntropyLoss(), "class"),
        (nn.CrossEntropyLoss(reduction="sum"), "class"),
        (nn.MSELoss(), "real"),
        (nn.CrossEntropyLoss(label_smoothing=0.1), "class"),
    ],
)
def test_replica_losses_and_output_gradients_match_autograd(loss_fn, target):
    """Closed-form output gradients (and the per-replica losses) against autograd per replica."""
    gen = torch.Generator().manual_seed(1)
    out = torch.randn(3, 5, 4, generator=gen)
    y = {
        "binary": torch.randint(0, 2, (3, 5, 4), generator=gen).float(),
        "class": torch.randint(0, 4, (3, 5), generator=gen),
        "real": torch.randn(3, 5, 4, generator=gen),
    }[target]
    losses, grad = output_gradient(loss_fn, out, y)
    np.testing.assert_allclose(replica_losses(loss_fn, out, y), losses, rtol=1e-6)
    for e in range(3):
        leaf = out[e].clone().requires_grad_(True)
        loss = loss_fn(leaf, y[e])
        loss.backward()
        np.testing.assert_allclose(float(losses[e]), loss.item(), rtol=1e-6)
        np.testing.assert_allclose(grad[e], leaf.grad, rtol=1e-5, atol=1e-7)


def test_frozen_parameters_are_refused():
    from thermosgd.errors import UsageError

    m = mlp(3, 4, 2, 1, seed=0)
    m[1].weight.requires_grad_(False)
    with pytest.raises(UsageError, match="frozen"):
        Ensemble([m, mlp(3, 4, 2, 1, seed=1)])
