"""Input checks shared by the instruments: each failure is one clear UsageError."""

from __future__ import annotations

import torch
from torch import nn

from thermosgd.errors import UsageError


def trainable_parameters(model: nn.Module, instrument: str) -> dict[str, torch.Tensor]:
    """The parameters with ``requires_grad=True``, by qualified name, in model order."""
    if not isinstance(model, nn.Module):
        raise UsageError(f"{instrument}: expected a torch.nn.Module, got {type(model).__name__}")
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise UsageError(
            f"{instrument}: {type(model).__name__} has no parameters with requires_grad=True, "
            "so there is no gradient to measure"
        )
    return params


def batch_size(inputs: torch.Tensor, targets: torch.Tensor, instrument: str, *, at_least: int = 1) -> int:
    """Check that inputs and targets are batched alike and return the batch size."""
    for label, t in (("inputs", inputs), ("targets", targets)):
        if not isinstance(t, torch.Tensor) or t.ndim == 0:
            raise UsageError(f"{instrument}: {label} must be a tensor with a leading batch dimension")
    if inputs.shape[0] != targets.shape[0]:
        raise UsageError(
            f"{instrument}: inputs and targets have different batch sizes "
            f"({inputs.shape[0]} vs {targets.shape[0]}; shapes {tuple(inputs.shape)} and {tuple(targets.shape)})"
        )
    n = int(inputs.shape[0])
    if n < at_least:
        raise UsageError(f"{instrument}: needs a batch of at least {at_least} samples, got {n}")
    return n


def per_sample_safe(model: nn.Module, instrument: str) -> None:
    """Refuse layers whose training-mode forward couples samples or draws random numbers."""
    for name, module in model.named_modules():
        if not module.training:
            continue
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            raise UsageError(
                f"{instrument}: layer '{name}' ({type(module).__name__}) mixes the samples of a batch in "
                "training mode, so per-sample gradients are undefined; call model.eval() first"
            )
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            raise UsageError(
                f"{instrument}: layer '{name}' ({type(module).__name__}) is random in training mode; "
                "call model.eval() first so that every sample sees the same network"
            )


def layer_of(param_name: str) -> str:
    """Module name owning a parameter: ``'net.0.weight' -> 'net.0'`` (top-level: the name itself)."""
    head, _, _ = param_name.rpartition(".")
    return head or param_name
