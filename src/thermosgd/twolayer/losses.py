"""The two losses of the two-layer experiments, each as one pair (value, derivative in f).

Both act per sample on the network output (logit) ``f`` and a label ``y`` of
the same shape and return that shape:

* ``"bce"``: binary cross-entropy on the logit,
  ``ℓ = −[y log σ(f) + (1−y) log(1−σ(f))] = softplus(f) − y f``, with
  ``∂ℓ/∂f = σ(f) − y`` (Eq. 15 up to the paper's sign convention of p);
* ``"mse"``: ``ℓ = ½ (f − y)²``, with ``∂ℓ/∂f = f − y``.

For both, ``∂ℓ/∂f`` is affine in ``y`` with slope −1 (the analysis of random
labels relies on it). Adding a loss means adding one pair here and its name to
``thermosgd.config``'s choices.
"""

from __future__ import annotations

import torch

__all__ = ["bce", "bce_df", "mse", "mse_df", "loss_value", "dloss_df"]


def bce(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on the logit: softplus(f) − y f (overflow-free form).

    torch's softplus returns f itself for f > 20, so the value is exact to e^-20 ≈ 2e-9.
    """
    return torch.nn.functional.softplus(f) - y * f


def bce_df(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∂(BCE)/∂f = σ(f) − y."""
    return torch.sigmoid(f) - y


def mse(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Half squared error ½(f − y)²."""
    return 0.5 * (f - y) ** 2


def mse_df(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∂(½(f − y)²)/∂f = f − y."""
    return f - y


def loss_value(f: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-sample loss ``(...)`` of outputs f ``(...)`` and labels y ``(...)``; loss is "bce" or "mse"."""
    if loss == "bce":
        return bce(f, y)
    if loss == "mse":
        return mse(f, y)
    raise ValueError(f"unknown loss {loss!r}")


def dloss_df(f: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-sample ∂ℓ/∂f ``(...)`` of outputs f ``(...)`` and labels y ``(...)``; loss is "bce" or "mse"."""
    if loss == "bce":
        return bce_df(f, y)
    if loss == "mse":
        return mse_df(f, y)
    raise ValueError(f"unknown loss {loss!r}")
