"""activation_rates and weight_norms against direct counts and direct sums."""

import math

import pytest
import torch
from torch import nn

from thermosgd.errors import UsageError
from thermosgd.instruments import activation_rates, weight_norms


def test_activation_rates_match_direct_count():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 1))
    x = torch.randn(50, 6)
    got = activation_rates(model, x)
    # twin: pre-activations by hand, count the positive ones
    a1 = x @ model[0].weight.T + model[0].bias
    a2 = a1.clamp(min=0) @ model[2].weight.T + model[2].bias
    c1, c2 = int((a1 > 0).sum()), int((a2 > 0).sum())
    assert got.per_layer == {"1": c1 / (50 * 5), "3": c2 / (50 * 4)}
    assert got.value == (c1 + c2) / (50 * 9)


def test_activation_rates_on_conv_with_pooling():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 2))
    x = torch.randn(5, 1, 6, 6)
    pre = model[0](x)
    assert activation_rates(model, x).per_layer["1"] == int((pre > 0).sum()) / pre.numel()


def test_reused_relu_pools_calls_and_missing_relu_errors():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.act = nn.Linear(3, 3), nn.Linear(3, 3), nn.ReLU()

        def forward(self, x):
            return self.act(self.fc2(self.act(self.fc1(x))))

    torch.manual_seed(2)
    m, x = Twice(), torch.randn(10, 3)
    h1 = m.fc1(x)
    h2 = m.fc2(h1.clamp(min=0))
    expected = (int((h1 > 0).sum()) + int((h2 > 0).sum())) / 60
    assert activation_rates(m, x).per_layer["act"] == pytest.approx(expected)
    with pytest.raises(UsageError, match="no nn.ReLU modules"):
        activation_rates(nn.Linear(3, 3), x)


def test_weight_norms_match_direct_sum():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3, bias=False))
    got = weight_norms(model)
    w0, w3 = model[0].weight.detach(), model[3].weight.detach()
    assert got.per_layer["0"] == pytest.approx(math.sqrt(float((w0**2).sum())), rel=1e-6)
    assert got.per_layer["3"] == pytest.approx(math.sqrt(float((w3**2).sum())), rel=1e-6)
    assert got.last == got.per_layer["3"]
    assert got.value == pytest.approx(math.sqrt(float((w0**2).sum() + (w3**2).sum())), rel=1e-6)
    with pytest.raises(UsageError, match="no submodule with a 'weight'"):
        weight_norms(nn.ReLU())


@pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated:FutureWarning")
def test_weight_norms_use_the_weight_the_forward_uses():
    """Twin: a layer under weight_norm or spectral_norm (parametrizations and the old hooks) counts with the
    weight its eval-mode forward multiplies by, read back from the forward itself (output - bias on unit inputs)."""
    from torch.nn.utils import parametrizations

    wrappers = [
        parametrizations.weight_norm,
        parametrizations.spectral_norm,
        torch.nn.utils.weight_norm,
        torch.nn.utils.spectral_norm,
    ]
    for wrap in wrappers:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), wrap(nn.Linear(4, 2)))
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.3 * torch.randn_like(p))  # as after SGD steps: the stored weight is stale
        model.eval()
        last = model[2]
        with torch.no_grad():
            used = last(torch.eye(4)) - last(torch.zeros(1, 4))  # row i = W[:, i]: the weight the forward used
        norms = weight_norms(model)
        assert list(norms.per_layer) == ["0", "2"], wrap
        assert norms.last == pytest.approx(float(used.norm()), rel=1e-6), wrap
