"""Each loss's derivative against autograd of its value; the names dispatch to the right pair."""

import pytest
import torch

from thermosgd.twolayer import losses


@pytest.mark.parametrize("loss", ["bce", "mse"])
def test_derivative_is_autograd_of_value(loss):
    g = torch.Generator().manual_seed(0)
    f = (torch.randn(200, generator=g, dtype=torch.float64) * 5).requires_grad_(True)
    y = torch.randint(0, 2, (200,), generator=g).double()
    losses.loss_value(f, y, loss).sum().backward()
    torch.testing.assert_close(losses.dloss_df(f.detach(), y, loss), f.grad, rtol=1e-12, atol=1e-12)


def test_bce_is_torch_bce_with_logits():
    g = torch.Generator().manual_seed(1)
    f = torch.randn(100, generator=g, dtype=torch.float64) * 30  # large logits: no overflow
    y = torch.randint(0, 2, (100,), generator=g).double()
    ref = torch.nn.functional.binary_cross_entropy_with_logits(f, y, reduction="none")
    # softplus returns f itself above f = 20, so the value is off by at most e^-20 there.
    torch.testing.assert_close(losses.loss_value(f, y, "bce"), ref, rtol=1e-12, atol=2.1e-9)


def test_derivative_is_affine_in_the_label_with_slope_minus_one():
    """The random-label averages of analysis.drift rely on this."""
    f = torch.linspace(-4, 4, 9, dtype=torch.float64)
    for loss in ("bce", "mse"):
        d0, d1 = (losses.dloss_df(f, torch.full_like(f, y), loss) for y in (0.0, 1.0))
        torch.testing.assert_close(d1 - d0, torch.full_like(f, -1.0))


def test_unknown_loss_is_refused():
    with pytest.raises(ValueError):
        losses.loss_value(torch.zeros(1), torch.zeros(1), "hinge")
