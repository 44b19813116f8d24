"""The per-sample moment algebra against its slow twin: a per-sample autograd loop.

float64 throughout: twin and closed forms agree to rounding, so the tolerance is tight (1e-10 relative).
"""

import pytest
import torch
from torch import nn

from thermosgd.instruments import _moments, hessian_trace_bound
from thermosgd.instruments.hessian import stacked_trace_bound

RTOL = 1e-10


def loop_gradients(x: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Twin: each replica's and sample's weight and bias gradient of ``sum(delta * (x W^T + b))``
    by its own backward pass (``(E, n, out, in)`` and ``(E, n, out)``)."""
    E, n = x.shape[:2]
    d_in, d_out = x.shape[-1], delta.shape[-1]
    gw = torch.empty(E, n, d_out, d_in, dtype=torch.float64)
    gb = torch.empty(E, n, d_out, dtype=torch.float64)
    for e in range(E):
        for i in range(n):
            w = torch.zeros(d_out, d_in, dtype=torch.float64, requires_grad=True)
            b = torch.zeros(d_out, dtype=torch.float64, requires_grad=True)
            (delta[e, i] * (x[e, i] @ w.T + b)).sum().backward()
            gw[e, i], gb[e, i] = w.grad, b.grad
    return gw, gb


def twin_variance(g: torch.Tensor, convention: str, per_entry: bool) -> torch.Tensor:
    """Per-entry variance over samples by torch.var (or BackPACK's definition), entry-summed unless per_entry."""
    n = g.shape[1]
    if convention == "unbiased":
        var = g.var(dim=1, correction=1)
    elif convention == "biased":
        var = g.var(dim=1, correction=0)
    else:
        var = (g / n).var(dim=1, correction=0)
    return var if per_entry else var.reshape(g.shape[0], -1).sum(1)


# (replicas E, samples n, positions P or None, in, out)
SHAPES = [(1, 2, None, 3, 1), (3, 7, None, 5, 4), (2, 5, 4, 3, 2), (4, 3, 1, 6, 3)]


@pytest.mark.parametrize("per_entry", [False, True])
@pytest.mark.parametrize("convention", _moments.CONVENTIONS)
@pytest.mark.parametrize("E, n, P, d_in, d_out", SHAPES)
def test_linear_moments_match_per_sample_loop(E, n, P, d_in, d_out, convention, per_entry):
    g = torch.Generator().manual_seed(E * 100 + n)
    pos = () if P is None else (P,)
    x = torch.randn(E, n, *pos, d_in, generator=g, dtype=torch.float64)
    delta = torch.randn(E, n, *pos, d_out, generator=g, dtype=torch.float64)
    gw, gb = loop_gradients(x, delta)
    fast_w = _moments.normalize(_moments.linear_weight_deviations(x, delta, per_entry=per_entry), n, convention)
    fast_b = _moments.normalize(_moments.bias_deviations(delta, per_entry=per_entry), n, convention)
    torch.testing.assert_close(fast_w, twin_variance(gw, convention, per_entry), rtol=RTOL, atol=1e-12)
    torch.testing.assert_close(fast_b, twin_variance(gb, convention, per_entry), rtol=RTOL, atol=1e-12)


def test_layer_means_weigh_every_entry_alike():
    g = torch.Generator().manual_seed(3)
    grads = {"a.weight": torch.randn(2, 6, 3, 4, generator=g), "a.bias": torch.randn(2, 6, 3, generator=g)}
    grads["b.weight"] = torch.randn(2, 6, 1, 3, generator=g)
    m2 = {k: _moments.deviations(v.double()) for k, v in grads.items()}
    total, per_layer = _moments.layer_means(m2, {k: v[0, 0].numel() for k, v in grads.items()}, 6)
    flat = torch.cat([v.double().reshape(2, 6, -1) for v in grads.values()], dim=2)
    torch.testing.assert_close(total, flat.var(dim=1).mean(1), rtol=RTOL, atol=0)
    a = torch.cat([grads["a.weight"].reshape(2, 6, -1), grads["a.bias"]], dim=2).double()
    torch.testing.assert_close(per_layer["a"], a.var(dim=1).mean(1), rtol=RTOL, atol=0)


@pytest.mark.parametrize("split", [1, 3, 5])
def test_merge_of_chunks_equals_whole(split):
    g = torch.Generator().manual_seed(split)
    v = torch.randn(8, 4, 3, generator=g, dtype=torch.float64)
    parts = [
        (c.mean(0), _moments.deviations(c.unsqueeze(0), per_entry=True)[0], c.shape[0]) for c in (v[:split], v[split:])
    ]
    mean, m2, count = _moments.merge(*parts)
    assert count == 8
    torch.testing.assert_close(mean, v.mean(0), rtol=RTOL, atol=1e-14)
    torch.testing.assert_close(m2, _moments.deviations(v.unsqueeze(0), per_entry=True)[0], rtol=RTOL, atol=1e-14)


@pytest.mark.parametrize("stride, padding, dilation", [((1, 1), (0, 0), (1, 1)), ((2, 1), (1, 2), (1, 2))])
def test_conv2d_gradients_are_linear_gradients_over_patches(stride, padding, dilation):
    conv = nn.Conv2d(2, 3, (3, 2), stride=stride, padding=padding, dilation=dilation).double()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(5, 2, 7, 6, generator=g, dtype=torch.float64)
    delta = torch.randn(conv(x).shape, generator=g, dtype=torch.float64)
    by_offset = _moments.conv2d_weight_grads(x, delta, conv.kernel_size, stride, padding, dilation)
    patches = _moments.conv2d_patches(x, conv.kernel_size, stride, padding, dilation)  # (n, L, C*kh*kw)
    gw, _ = loop_gradients(patches.unsqueeze(0), delta.flatten(2).mT.unsqueeze(0))
    torch.testing.assert_close(by_offset.reshape(5, 3, -1), gw[0], rtol=RTOL, atol=1e-12)
    loop = []  # and the twin of the twin: autograd through the convolution itself, sample by sample
    for i in range(5):
        conv.zero_grad()
        (conv(x[i : i + 1]) * delta[i : i + 1]).sum().backward()
        loop.append(conv.weight.grad.clone())
    torch.testing.assert_close(by_offset, torch.stack(loop), rtol=RTOL, atol=1e-12)


def test_stacked_trace_bound_is_each_replicas_bound():
    torch.manual_seed(5)
    nets = [
        nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5, bias=False), nn.ReLU(), nn.Linear(5, 3))
        for _ in range(3)
    ]
    x = torch.randn(3, 7, 4)
    loss_fn = nn.CrossEntropyLoss()
    layers = [[m for m in net if isinstance(m, nn.Linear)] for net in nets]
    weights = [torch.stack([ls[k].weight for ls in layers]) for k in range(3)]
    biases = [None if layers[0][k].bias is None else torch.stack([ls[k].bias for ls in layers]) for k in range(3)]
    stacked = stacked_trace_bound(loss_fn, x, weights, biases)
    for e, net in enumerate(nets):
        torch.testing.assert_close(
            stacked[e].float(), hessian_trace_bound(net, loss_fn, x[e]).per_sample, rtol=1e-6, atol=0
        )
