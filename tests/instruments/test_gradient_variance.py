"""gradient_variance against its brute-force twin: a Python loop over single samples."""

import pytest
import torch
from torch import nn

from thermosgd.errors import UsageError
from thermosgd.instruments import gradient_variance, per_sample_gradients

# float64 throughout: twin and instrument agree to rounding, so tolerances are tight.
RTOL = 1e-9


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(12, 7), nn.ReLU(), nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 3)
    ).double()


def convnet() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 3, 3),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(3, 3),
    ).double()


def batch(shape, n=9, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def loop_gradients(model, loss_fn, x, y):
    """Twin: per-sample gradients by N separate backward passes."""
    rows = []
    for i in range(len(x)):
        model.zero_grad()
        loss_fn(model(x[i : i + 1]), y[i : i + 1]).backward()
        rows.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    model.zero_grad(set_to_none=True)
    return {n: torch.stack([r[n] for r in rows]) for n in rows[0]}


def loop_variance(model, loss_fn, x, y, convention):
    grads = loop_gradients(model, loss_fn, x, y)
    n = len(x)
    sums, counts = {}, {}
    for name, g in grads.items():
        mean = g.mean(0)
        if convention == "unbiased":
            var = ((g - mean) ** 2).sum(0) / (n - 1)
        else:
            var = ((g / n - mean / n) ** 2).sum(0) / n
        layer = name.rsplit(".", 1)[0]
        sums[layer] = sums.get(layer, 0.0) + var.sum().item()
        counts[layer] = counts.get(layer, 0) + var.numel()
    return sum(sums.values()) / sum(counts.values()), {k: sums[k] / counts[k] for k in sums}


@pytest.mark.parametrize("make, shape", [(mlp, (3, 4)), (convnet, (2, 8, 8))])
def test_per_sample_gradients_match_loop(make, shape):
    model, (x, y) = make(), batch(shape)
    loss_fn = nn.CrossEntropyLoss()
    fast = per_sample_gradients(model, loss_fn, x, y)
    slow = loop_gradients(model, loss_fn, x, y)
    assert fast.keys() == slow.keys()
    for name in slow:
        torch.testing.assert_close(fast[name], slow[name], rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("convention", ["unbiased", "backpack"])
@pytest.mark.parametrize("make, shape", [(mlp, (3, 4)), (convnet, (2, 8, 8))])
def test_variance_matches_loop(make, shape, convention, fast):
    model, (x, y) = make(), batch(shape)
    loss_fn = nn.CrossEntropyLoss()
    got = gradient_variance(model, loss_fn, x, y, convention=convention, fast=fast)
    value, per_layer = loop_variance(model, loss_fn, x, y, convention)
    assert got.value == pytest.approx(value, rel=RTOL)
    assert got.per_layer.keys() == per_layer.keys()
    for k in per_layer:
        assert got.per_layer[k] == pytest.approx(per_layer[k], rel=RTOL)
    assert got.batch_size == len(x) and got.convention == convention


class Reused(nn.Module):
    """One Linear applied twice (shared weights), with an in-place ReLU in between."""

    def __init__(self):
        super().__init__()
        self.fc, self.act, self.out = nn.Linear(4, 4), nn.ReLU(inplace=True), nn.Linear(4, 3, bias=False)

    def forward(self, x):
        return self.out(self.act(self.fc(self.act(self.fc(x)))))


@pytest.mark.parametrize(
    "make", [Reused, lambda: nn.Sequential(nn.Linear(4, 5), nn.ReLU(inplace=True), nn.Linear(5, 3))]
)
def test_linear_fast_path_edge_cases_match_loop(make):
    torch.manual_seed(4)
    model, (x, y) = make().double(), batch((4,))
    got = gradient_variance(model, nn.CrossEntropyLoss(), x, y)
    value, per_layer = loop_variance(model, nn.CrossEntropyLoss(), x, y, "unbiased")
    assert got.value == pytest.approx(value, rel=RTOL)
    assert got.per_layer == pytest.approx(per_layer, rel=RTOL)


def test_backpack_convention_is_rescaled_unbiased():
    model, (x, y) = mlp(), batch((3, 4), n=7)
    loss_fn = nn.CrossEntropyLoss()
    unbiased = gradient_variance(model, loss_fn, x, y).value
    bp = gradient_variance(model, loss_fn, x, y, convention="backpack").value
    assert bp == pytest.approx(unbiased * 6 / 7**3, rel=RTOL)


def test_matches_backpack_when_installed():
    backpack = pytest.importorskip("backpack")
    from backpack.extensions import Variance

    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(27, 4), nn.ReLU(), nn.Linear(4, 3)
    )
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 3, (16,))
    loss_fn = nn.CrossEntropyLoss()
    ours = gradient_variance(model, loss_fn, x, y, convention="backpack")
    bmodel, bloss = backpack.extend(model), backpack.extend(nn.CrossEntropyLoss())
    with backpack.backpack(Variance()):  # input requiring grad keeps BackPACK's hooks quiet
        bloss(bmodel(x.clone().requires_grad_()), y).backward()
    total = sum(p.variance.double().sum().item() for p in model.parameters())
    count = sum(p.numel() for p in model.parameters())
    assert ours.value == pytest.approx(total / count, rel=1e-4)


def test_frozen_parameters_are_left_out_and_model_untouched():
    model, (x, y) = mlp(), batch((3, 4))
    model[1].weight.requires_grad_(False)
    before = [p.clone() for p in model.parameters()]
    got = gradient_variance(model, nn.CrossEntropyLoss(), x, y)
    value, per_layer = loop_variance(model, nn.CrossEntropyLoss(), x, y, "unbiased")
    assert got.value == pytest.approx(value, rel=RTOL)
    assert got.per_layer == pytest.approx(per_layer, rel=RTOL)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())


def test_chunked_equals_unchunked():
    model, (x, y) = convnet(), batch((2, 8, 8))
    a = gradient_variance(model, nn.CrossEntropyLoss(), x, y).value
    b = gradient_variance(model, nn.CrossEntropyLoss(), x, y, chunk_size=4).value
    assert a == pytest.approx(b, rel=RTOL)


def test_no_trainable_parameters():
    model = mlp().requires_grad_(False)
    with pytest.raises(UsageError, match="no parameters with requires_grad=True"):
        gradient_variance(model, nn.CrossEntropyLoss(), *batch((3, 4)))


def test_mismatched_batch_sizes():
    x, y = batch((3, 4))
    with pytest.raises(UsageError, match=r"different batch sizes \(9 vs 8"):
        gradient_variance(mlp(), nn.CrossEntropyLoss(), x, y[:8])


def test_single_sample_batch():
    x, y = batch((3, 4), n=1)
    with pytest.raises(UsageError, match="at least 2 samples"):
        gradient_variance(mlp(), nn.CrossEntropyLoss(), x, y)


@pytest.mark.parametrize("layer, word", [(nn.BatchNorm1d(12), "BatchNorm1d"), (nn.Dropout(0.5), "Dropout")])
def test_layers_that_couple_or_randomize_samples(layer, word):
    model = nn.Sequential(nn.Flatten(), layer, nn.Linear(12, 3)).double()
    x, y = batch((3, 4))
    with pytest.raises(UsageError, match=rf"layer '1' \({word}\).*model.eval\(\)"):
        gradient_variance(model, nn.CrossEntropyLoss(), x, y)
    model.eval()  # fine once samples are independent
    assert gradient_variance(model, nn.CrossEntropyLoss(), x, y).value > 0


def test_non_scalar_loss_and_bad_convention():
    x, y = batch((3, 4))
    with pytest.raises(UsageError, match="must return a scalar"):
        gradient_variance(mlp(), nn.MSELoss(reduction="none"), x, torch.zeros(9, 3, dtype=torch.float64))
    with pytest.raises(UsageError, match="convention"):
        gradient_variance(mlp(), nn.CrossEntropyLoss(), x, y, convention="mean")
