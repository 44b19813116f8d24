"""The ensemble against its twin, the sequential loop: same seeds, same curves to tolerance.

Float32 training of the same runs in another summation order drifts apart by
rounding only; over these short runs every recorded value agrees to rtol 1e-4
(measured: ≤ 2e-5), except counts (activation rates), where a unit sitting on the
ReLU threshold may flip: atol = one unit-sample of the probe set.
"""

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from thermosgd import presets
from thermosgd.deep import Run, TrainSet, train_sweep
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
from thermosgd.deep.runs import DeepSpec, _gaussian_set, _image_set, _instruments, _model
from thermosgd.instruments import every, log_spaced, weight_norms

RTOL = 1e-4


def _preset_setup(name, dataset=None, **changes):
    from thermosgd.data import load_dataset

    p = dataclasses.replace(DeepSpec.from_preset(presets.get(name)), **changes)
    if p.dataset == "gaussian":
        images, shape, out_dim, loss_fn = None, (p.gaussian_dim,), 1, nn.BCEWithLogitsLoss()
    else:
        images = load_dataset(dataset, None, split="train")
        shape, out_dim, loss_fn = tuple(images.images.shape[1:]), len(images.classes), nn.CrossEntropyLoss()

    def setup(seed):
        data = _gaussian_set(p, seed) if images is None else _image_set(p, images)
        model = _model(p, shape, out_dim, seed)
        return Run(model, data, _instruments(p, model, data, loss_fn))

    kwargs = dict(
        lrs=p.lrs,
        batch_sizes=p.batch_sizes,
        seeds=range(p.seeds),
        steps=p.steps,
        schedule=log_spaced(p.steps, p.points),
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
    import thermosgd.deep.train as T

    setup, loss_fn, kw = _preset_setup(
        "fig2-middle", seeds=2, lrs=(0.05, 0.1), steps=80, points=8, n_train=64, probe_size=16
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
        name,
        dataset="digits",
        seeds=2,
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
