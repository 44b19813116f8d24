"""Activation rate of ReLU units (Eq. 14): the fraction of units with positive pre-activation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from thermosgd.errors import UsageError
from thermosgd.instruments._checks import call_model, model_dtype


@dataclass(frozen=True)
class ActivationRates:
    """Result of :func:`activation_rates`.

    Attributes:
        value: active unit-sample pairs over all unit-sample pairs, pooled over every
            ReLU layer (so a layer weighs by its number of units).
        per_layer: ReLU module name -> fraction of its outputs that are ``> 0``, over the
            batch and all units (for a conv layer: all channels and positions).
    """

    value: float
    per_layer: dict[str, float]

    def to_record(self, name: str) -> dict[str, float | dict[str, float]]:
        return {name: self.value, f"{name}_layer": self.per_layer}


def activation_rates(model: nn.Module, inputs: torch.Tensor) -> ActivationRates:
    """Fraction of active units per ``nn.ReLU`` layer and overall, from forward hooks.

    A unit is active on a sample when its ReLU output is positive, i.e. its
    pre-activation is ``> 0`` (``sigma' = 1``, Eq. 14). Only ``nn.ReLU`` modules are
    seen: a ``torch.relu`` call inside ``forward`` cannot be hooked. A ReLU module
    applied several times in one forward pass pools all its calls.

    Args:
        model: any module containing ``nn.ReLU`` submodules; run as is (train/eval mode
            untouched), without gradients.
        inputs: ``(N, *input_shape)``; floating-point inputs of another dtype than the
            model's parameters are cast to it.

    Returns:
        :class:`ActivationRates`.
    """
    if not isinstance(model, nn.Module):
        raise UsageError(f"activation_rates: expected a torch.nn.Module, got {type(model).__name__}")
    inputs = model_dtype(model, inputs, "inputs", "activation_rates")
    relus = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise UsageError(
            "activation_rates: the model has no nn.ReLU modules (a functional relu inside forward "
            "cannot be hooked; use an nn.ReLU module)"
        )
    active: dict[str, int] = {name: 0 for name, _ in relus}
    total: dict[str, int] = {name: 0 for name, _ in relus}

    def hook_for(name: str):
        def hook(module: nn.Module, args, output: torch.Tensor) -> None:
            active[name] += int((output > 0).sum())
            total[name] += output.numel()

        return hook

    handles = [m.register_forward_hook(hook_for(name)) for name, m in relus]
    try:
        with torch.no_grad():
            call_model(model, inputs, "activation_rates")  # its output does not matter, only the hooks
    finally:
        for h in handles:
            h.remove()
    used = [name for name in total if total[name] > 0]
    if not used:
        raise UsageError("activation_rates: no nn.ReLU module was called during the forward pass")
    per_layer = {name: active[name] / total[name] for name in used}
    value = sum(active[n] for n in used) / sum(total[n] for n in used)
    return ActivationRates(value=value, per_layer=per_layer)


def replica_activation_rates(
    model: nn.Module, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], inputs: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]] | None:
    """:func:`activation_rates` of ``E`` replicas of ``model``, replica by replica.

    Args:
        model: the architecture; each replica runs through it with ``functional_call``.
        params, buffers: name -> ``(E, *shape)`` stacked tensors.
        inputs: ``(E, n, *input_shape)``.

    Returns:
        float64 ``(E,)`` pooled rates and ReLU module name -> ``(E,)`` rates (as
        :class:`ActivationRates`' ``value`` and ``per_layer``), or None when ``model``
        has no ``nn.ReLU`` module that its forward calls.
    """
    from torch.func import functional_call

    relus = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ReLU)]
    counts: dict[str, list[tuple[int, int]]] = {name: [] for name, _ in relus}

    def hook_for(name: str):
        def hook(module: nn.Module, args, output: torch.Tensor) -> None:
            counts[name].append((int((output > 0).sum()), output.numel()))

        return hook

    E = inputs.shape[0]
    rows = []
    handles = [m.register_forward_hook(hook_for(name)) for name, m in relus]
    try:
        with torch.no_grad():
            for e in range(E):
                for seen in counts.values():
                    seen.clear()
                replica = ({k: v[e] for k, v in params.items()}, {k: v[e] for k, v in buffers.items()})
                functional_call(model, replica, (inputs[e],))
                rows.append({n: (sum(a for a, _ in c), sum(t for _, t in c)) for n, c in counts.items() if c})
    finally:
        for h in handles:
            h.remove()
    used = list(rows[0]) if rows else []
    if not used:
        return None
    per_layer = {n: torch.tensor([r[n][0] / r[n][1] for r in rows], dtype=torch.float64) for n in used}
    value = torch.tensor([sum(r[n][0] for n in used) / sum(r[n][1] for n in used) for r in rows], dtype=torch.float64)
    return value, per_layer
