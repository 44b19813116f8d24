"""The replica (batched) forms of the instruments against the single-model ones, replica by replica.

The single-model instruments are themselves tested against per-sample loops
(test_gradient_variance.py, test_activations_norms.py). float64; 1e-9 relative.
"""

import copy

import pytest
import torch
from torch import nn
from torch.func import stack_module_state

from thermosgd.deep.ensemble import Ensemble
from thermosgd.instruments import activation_rates, gradient_variance, per_sample_gradients, weight_norms
from thermosgd.instruments.activations import replica_activation_rates
from thermosgd.instruments.gradient_variance import (
    replica_gradient_variance,
    replica_gradient_variance_batched,
    replica_per_sample_gradients,
)
from thermosgd.instruments.norms import replica_weight_norms

RTOL = 1e-9


def layernorm_mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(5, 6), nn.LayerNorm(6), nn.ReLU(), nn.Linear(6, 4), nn.GELU(), nn.ReLU(), nn.Linear(4, 3)
    ).double()


def replicas(inputs=(5,), n=7, E=3):
    models = [layernorm_mlp(e) for e in range(E)]
    g = torch.Generator().manual_seed(9)
    x = torch.randn(E, n, *inputs, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (E, n), generator=g)
    return models, x, y


def test_replica_per_sample_gradients_are_each_replicas():
    models, x, y = replicas()
    params, buffers = stack_module_state(models)
    got = replica_per_sample_gradients(models[0], params, buffers, nn.CrossEntropyLoss(), x, y)
    for e, m in enumerate(models):
        want = per_sample_gradients(m, nn.CrossEntropyLoss(), x[e], y[e])
        for k in want:
            torch.testing.assert_close(got[k][e], want[k], rtol=RTOL, atol=1e-13)


@pytest.mark.parametrize("inputs", [(5,), (2, 5)])  # (2, 5): Linear over positions
@pytest.mark.parametrize("path", ["vmap", "hooks"])
def test_replica_gradient_variance_is_each_replicas(path, inputs):
    models, x, y = replicas(inputs)
    loss = nn.CrossEntropyLoss()
    if inputs != (5,):
        models = [nn.Sequential(m, nn.Flatten(), nn.Linear(6, 3).double()) for m in models]
    if path == "hooks":
        ens = Ensemble([copy.deepcopy(m) for m in models])
        assert ens.layers is not None
        total, per_layer = replica_gradient_variance_batched(ens, loss, x, y)
    else:
        params, buffers = stack_module_state(models)
        total, per_layer = replica_gradient_variance(
            replica_per_sample_gradients(models[0], params, buffers, loss, x, y)
        )
    for e, m in enumerate(models):
        want = gradient_variance(m, loss, x[e], y[e], fast=False)
        torch.testing.assert_close(float(total[e]), want.value, rtol=RTOL, atol=0)
        assert list(per_layer) == list(want.per_layer)
        for k, v in want.per_layer.items():
            torch.testing.assert_close(float(per_layer[k][e]), v, rtol=RTOL, atol=1e-15)


def test_replica_activation_rates_and_weight_norms_are_each_replicas():
    models, x, _ = replicas()
    params, buffers = stack_module_state(models)
    value, per_layer = replica_activation_rates(models[0], params, buffers, x)
    total, norms = replica_weight_norms(models[0], params)
    for e, m in enumerate(models):
        want = activation_rates(m, x[e])
        assert float(value[e]) == want.value and {k: float(v[e]) for k, v in per_layer.items()} == want.per_layer
        w = weight_norms(m)
        torch.testing.assert_close(float(total[e]), w.value, rtol=1e-12, atol=0)
        assert {k: pytest.approx(float(v[e]), rel=1e-12) for k, v in norms.items()} == w.per_layer
    assert (
        replica_activation_rates(nn.Linear(5, 2).double(), *stack_module_state([nn.Linear(5, 2).double()]), x[:1])
        is None
    )
