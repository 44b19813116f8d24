"""The noise models on any model (deep/noise.py + Ensemble.weighted_step) against a per-sample loop.

The twin forms every per-sample gradient g_i by its own backward pass on a tiny net and
builds the update from the definitions: θ − η ḡ ("gd"), θ − η(ḡ + (|B|(G−1))^(−1/2) Σ z_i (g_i − ḡ))
("gaussian"), θ − η(ḡ + σ₀ z / √|B|) ("frozen"), θ − η mean_B g_i ("sgd"). float64; 1e-10 relative.
"""

import copy

import pytest
import torch
from torch import nn

from thermosgd.deep.ensemble import Ensemble
from thermosgd.deep.noise import frozen_noise, step_weights
from thermosgd.studies.model import sample_losses

RTOL = 1e-10


def tiny(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Tanh(), nn.Linear(4, 1)).double()


def loop_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    each = sample_losses("bce")
    out = []
    for i in range(len(x)):
        model.zero_grad()
        each(model(x[i : i + 1]).unsqueeze(0), y[i : i + 1].unsqueeze(0)).sum().backward()
        out.append({k: p.grad.clone() for k, p in model.named_parameters()})
    return out


@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("noise", ["sgd", "gd", "gaussian", "frozen"])
def test_one_step_matches_the_per_sample_loop(noise, batched):
    models = [tiny(0), tiny(1)]
    ens = Ensemble([copy.deepcopy(m) for m in models], batched=batched)
    assert (ens.layers is not None) == batched
    g = torch.Generator().manual_seed(2)
    n, bs = 6, 2
    x, y = torch.randn(2, n, 3, generator=g, dtype=torch.float64), torch.randint(0, 2, (2, n), generator=g).double()
    lr = torch.tensor([0.3, 0.7], dtype=torch.float64)
    z = torch.randn(n, generator=g, dtype=torch.float64)
    draws = {k: torch.randn(v.shape[1:], generator=g, dtype=torch.float64) for k, v in ens.params.items()}
    sigma2 = {}
    for k in ens.params:  # σ₀²: the twin's per-entry variance over the samples, per replica
        sigma2[k] = torch.stack(
            [torch.stack([gi[k] for gi in loop_gradients(m, x[e], y[e])]).var(0) for e, m in enumerate(models)]
        )
    extra = frozen_noise(sigma2, lr, bs, draws) if noise == "frozen" else None
    w = step_weights(noise, lr, bs, n, z if noise == "gaussian" else None)
    ens.weighted_step(sample_losses("bce"), x, y, w, torch.ones(2, dtype=torch.bool), extra)
    for e, model in enumerate(models):
        grads = loop_gradients(model, x[e], y[e])
        for k, p in model.named_parameters():
            gi = torch.stack([gr[k] for gr in grads])
            mean = gi.mean(0)
            if noise == "gaussian":
                step = mean + ((z - z.mean()).view(-1, *[1] * mean.dim()) * gi).sum(0) / (bs * (n - 1)) ** 0.5
            elif noise == "frozen":
                step = mean + sigma2[k][e].sqrt() * draws[k] / bs**0.5
            else:  # "sgd" with |B| = n samples given, "gd" with G = n: the plain mean
                step = mean
            torch.testing.assert_close(ens.params[k][e], p.detach() - lr[e] * step, rtol=RTOL, atol=1e-13)


def test_gaussian_noise_has_the_per_sample_covariance():
    """ξ = (|B|(G−1))^(−1/2) Σ (z_i − z̄) g_i over many z: its covariance is Σ̂/|B| (exact in expectation).

    Fixed per-sample gradients g (G = 5 of dimension 3); 200000 draws of z from seed 0; tolerance 3%
    of the largest entry (the Monte Carlo error at this size is about 0.5%).
    """
    g = torch.Generator().manual_seed(0)
    grads = torch.randn(5, 3, generator=g, dtype=torch.float64)
    bs, G = 4, 5
    lr = torch.ones(1, dtype=torch.float64)
    zs = torch.randn(200_000, G, generator=g, dtype=torch.float64)
    w = torch.stack([step_weights("gaussian", lr, bs, G, z)[0] for z in zs[:2000]])  # weights for the first draws
    xi_fast = w @ grads - grads.mean(0)
    xi_all = ((zs - zs.mean(1, keepdim=True)) @ grads) / (bs * (G - 1)) ** 0.5
    torch.testing.assert_close(xi_fast, xi_all[:2000], rtol=1e-10, atol=1e-12)
    target = torch.cov(grads.T, correction=1) / bs
    assert (torch.cov(xi_all.T) - target).abs().max() < 0.03 * target.abs().max()
