"""The ensemble against its twin, the sequential loop: same seeds, same curves to tolerance.

Float32 training of the same runs in another summation order drifts apart by
rounding only; over these short runs every recorded value agrees to rtol 1e-4
(measured: ≤ 2e-5), except counts (activation rates), where a unit sitting on the
ReLU threshold may flip: atol = one unit-sample of the probe set.
"""

import dataclasses
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from thermosgd.deep.ensemble import (
    Ensemble,
    LastWeightNorm,
    ProbeActivationRates,
    ProbeGradientVariance,
    ProbeLoss,
    ProbeTraceBound,
    output_gradient,
    replica_losses,
)
from thermosgd.deep.models import cnn, mlp, two_layer
from thermosgd.instruments import every, log_spaced, weight_norms


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
            "loss": ProbeLoss(loss_fn, xp, yp),
            "activation_rate": ProbeActivationRates(xp),
            "grad_var": ProbeGradientVariance(loss_fn, xp, yp),
        }
        if model == "two-layer":
            tools["v_norm"] = LastWeightNorm()
        if model != "cnn":
            tools["trace_bound"] = ProbeTraceBound(loss_fn, xp)
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


@pytest.mark.parametrize("arch", ["mlp", "cnn", "two-layer"])
def test_batched_instruments_equal_the_module_instruments(arch):
    """Every Probe* instrument on the ensemble, replica by replica, against the instrument
    of thermosgd.instruments on that replica's own module (after some training, so the
    replicas differ)."""
    gen = torch.Generator().manual_seed(0)
    if arch == "mlp":
        models, loss_fn = _replicas(lambda s: mlp(12, 9, 4, 1, seed=s)), nn.BCEWithLogitsLoss()
        xs = [torch.randn(10, 12, generator=gen) for _ in models]
        ys = [torch.randint(0, 2, (10, 1), generator=gen).float() for _ in models]
    elif arch == "cnn":
        models, loss_fn = (
            _replicas(lambda s: cnn(1, 8, 3, seed=s, channels=3, kernel_size=3, conv_layers=2, padding=1)),
            nn.CrossEntropyLoss(),
        )
        xs = [torch.randn(6, 1, 8, 8, generator=gen) for _ in models]
        ys = [torch.randint(0, 3, (6,), generator=gen) for _ in models]
    else:
        models, loss_fn = _replicas(lambda s: two_layer(12, 7, 3, seed=s)), nn.CrossEntropyLoss(reduction="sum")
        xs = [torch.randn(10, 12, generator=gen) for _ in models]
        ys = [torch.randint(0, 3, (10,), generator=gen) for _ in models]
    ens = Ensemble(models)
    x, y = torch.stack(xs), torch.stack(ys)
    lr = torch.tensor([0.5, 0.2, 0.1, 0.05])
    for _ in range(3):
        ens.step(loss_fn, x, y, lr, torch.ones(4, dtype=torch.bool))
    mods = [ens.load_into(m, e) for e, m in enumerate(models)]
    tools = [
        ProbeLoss(loss_fn, xs[0], ys[0]),
        ProbeActivationRates(xs[0]),
        ProbeGradientVariance(loss_fn, xs[0], ys[0]),
        LastWeightNorm(),
    ]
    if arch != "cnn":
        tools.append(ProbeTraceBound(loss_fn, xs[0]))
    for tool in tools:
        objs = [
            dataclasses.replace(tool, **{k: v for k, v in (("x", xs[e]), ("y", ys[e])) if hasattr(tool, k)})
            for e in range(4)
        ]
        batched = type(tool).ensemble(ens, objs)
        for e in range(4):
            one = objs[e](mods[e])
            got, want = (batched[e], one) if isinstance(one, float) else (batched[e].value, one.value)
            np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=f"{type(tool).__name__} replica {e}")
            if hasattr(one, "per_layer"):
                assert list(batched[e].per_layer) == list(one.per_layer)
                np.testing.assert_allclose(list(batched[e].per_layer.values()), list(one.per_layer.values()), rtol=1e-5)


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
