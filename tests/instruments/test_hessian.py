"""hessian_trace and hessian_trace_bound against the exact Hessian of tiny nets."""

import math

import pytest
import torch
from torch import nn
from torch.autograd.functional import hessian
from torch.func import functional_call

from thermosgd.errors import UsageError
from thermosgd.instruments import hessian_trace, hessian_trace_bound
from thermosgd.instruments.hessian import rademacher


def exact_hessian(model, loss_fn, x, y):
    """Twin: the full (P, P) Hessian of the batch loss by torch.autograd.functional.hessian."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])

    def f(w):
        params, i = {}, 0
        for n, s in zip(names, shapes):
            params[n] = w[i : i + s.numel()].reshape(s)
            i += s.numel()
        return loss_fn(functional_call(model, params, (x,)), y)

    return hessian(f, flat)


def tiny_mlp(seed, bias=True, widths=(4, 5, 3, 3)):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths[:-2], widths[1:-1]):
        layers += [nn.Linear(a, b, bias=bias), nn.ReLU()]
    layers.append(nn.Linear(widths[-2], widths[-1], bias=bias))
    return nn.Sequential(*layers).double()


def data(n=6, d=4, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randint(0, classes, (n,), generator=g)


def test_hutchinson_equals_exact_quadratic_forms_of_the_same_probes():
    model, (x, y) = tiny_mlp(0), data()
    loss_fn = nn.CrossEntropyLoss()
    H = exact_hessian(model, loss_fn, x, y)
    got = hessian_trace(model, loss_fn, x, y, samples=50, generator=torch.Generator().manual_seed(7))
    v = rademacher(50, H.shape[0], torch.Generator().manual_seed(7), torch.float64)
    forms = torch.einsum("si,ij,sj->s", v, H, v)
    assert got.value == pytest.approx(float(forms.mean()), rel=1e-9)
    assert got.stderr == pytest.approx(float(forms.std() / math.sqrt(50)), rel=1e-9)


def test_hutchinson_is_unbiased_with_the_right_standard_error():
    model, (x, y) = tiny_mlp(1), data(seed=1)
    loss_fn = nn.CrossEntropyLoss()
    H = exact_hessian(model, loss_fn, x, y)
    n = 4000
    got = hessian_trace(model, loss_fn, x, y, samples=n, generator=torch.Generator().manual_seed(0))
    off = H - torch.diag(torch.diag(H))
    true_se = math.sqrt(2 * float((off**2).sum()) / n)  # var(v^T H v) = 2 sum_{i != j} H_ij^2
    assert abs(got.value - float(H.trace())) < 4 * true_se
    assert got.stderr == pytest.approx(true_se, rel=0.1)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_bound_is_above_the_exact_trace(seed, bias, loss):
    classes = 3 if loss == "ce" else 2
    model = tiny_mlp(seed, bias, widths=(4, 5, 4, classes))
    x, y = data(n=8, classes=classes, seed=seed)
    if loss == "ce":
        loss_fn = nn.CrossEntropyLoss()
    else:
        loss_fn, y = nn.BCEWithLogitsLoss(), torch.nn.functional.one_hot(y, classes).double()
    exact = float(exact_hessian(model, loss_fn, x, y).trace())
    bound = hessian_trace_bound(model, loss_fn, x)
    assert exact <= bound.value * (1 + 1e-9)
    assert bound.per_sample.shape == (8,)
    assert bound.value == pytest.approx(float(bound.per_sample.mean()), rel=1e-6)


def test_bound_is_tight_for_a_width_one_chain():
    # all factors are 1x1, so every inequality in Eq. 49-61 is an equality
    model = tiny_mlp(0, bias=False, widths=(1, 1, 1, 1))
    with torch.no_grad():
        for p in model.parameters():
            p.abs_().add_(0.1)
    x, y = torch.tensor([[0.7], [1.3]], dtype=torch.float64), torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    loss_fn = nn.BCEWithLogitsLoss()
    exact = float(exact_hessian(model, loss_fn, x, y).trace())
    assert hessian_trace_bound(model, loss_fn, x).value == pytest.approx(exact, rel=1e-9)


def test_sum_reduction_scales_by_batch():
    model, (x, _) = tiny_mlp(2), data()
    mean = hessian_trace_bound(model, nn.CrossEntropyLoss(), x).value
    total = hessian_trace_bound(model, nn.CrossEntropyLoss(reduction="sum"), x).value
    assert total == pytest.approx(6 * mean, rel=1e-9)


def test_bound_rejects_non_mlps_and_other_losses():
    conv = nn.Sequential(nn.Conv2d(1, 1, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(UsageError, match=r"layer '0' \(Conv2d\) is not part of a ReLU MLP"):
        hessian_trace_bound(conv, nn.CrossEntropyLoss(), torch.randn(2, 1, 4, 4))
    tanh = nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 2))
    with pytest.raises(UsageError, match=r"layer '1' \(Tanh\)"):
        hessian_trace_bound(tanh, nn.CrossEntropyLoss(), torch.randn(2, 2))
    with pytest.raises(UsageError, match="CrossEntropyLoss or nn.BCEWithLogitsLoss"):
        hessian_trace_bound(nn.Sequential(nn.Linear(2, 2)), nn.MSELoss(), torch.randn(2, 2))


def test_trace_bad_input():
    model, (x, y) = tiny_mlp(0), data()
    with pytest.raises(UsageError, match="different batch sizes"):
        hessian_trace(model, nn.CrossEntropyLoss(), x, y[:3])
    with pytest.raises(UsageError, match="samples must be >= 2"):
        hessian_trace(model, nn.CrossEntropyLoss(), x, y, samples=1)
    with pytest.raises(UsageError, match="no parameters with requires_grad"):
        hessian_trace(model.requires_grad_(False), nn.CrossEntropyLoss(), x, y)
