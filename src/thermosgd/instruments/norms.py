"""Weight norms per layer (the paper's ``||V||`` is the last layer's)."""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parameter import UninitializedParameter
from torch.nn.utils import parametrize

from thermosgd.errors import UsageError


@dataclass(frozen=True)
class WeightNorms:
    """Result of :func:`weight_norms`.

    Attributes:
        value: Frobenius norm of all weights together, ``sqrt(sum_l ||W_l||_F**2)``.
        per_layer: module name -> Frobenius norm of its ``weight`` parameter, in model order.
    """

    value: float
    per_layer: dict[str, float]

    @property
    def last(self) -> float:
        """Norm of the last layer's weight (``||V||`` for ``f(x) = V relu(Wx + b)``)."""
        return next(reversed(self.per_layer.values()))

    def to_record(self, name: str) -> dict[str, float | dict[str, float]]:
        return {name: self.value, f"{name}_layer": self.per_layer}


def _effective_weight(module: nn.Module) -> torch.Tensor | None:
    """The weight a module's forward uses: a plain ``weight`` parameter, or the one a parametrization
    (``parametrizations.weight_norm``, ``spectral_norm``) or an old-style norm hook computes."""
    if parametrize.is_parametrized(module, "weight"):
        weight = module.weight  # computed from the originals by the parametrization
        return weight if isinstance(weight, torch.Tensor) else None
    w = module._parameters.get("weight")
    if isinstance(w, torch.Tensor):
        return w
    for hook in module._forward_pre_hooks.values():  # torch.nn.utils.weight_norm / spectral_norm (old style)
        if getattr(hook, "name", None) == "weight" and hasattr(hook, "compute_weight"):
            if "do_power_iteration" in inspect.signature(hook.compute_weight).parameters:
                return hook.compute_weight(module, do_power_iteration=False)
            return hook.compute_weight(module)
    return None


def weight_norms(model: nn.Module) -> WeightNorms:
    """Frobenius norm ``||W||_F`` of each module's weight (biases excluded).

    Args:
        model: any module; every submodule with a parameter called ``weight`` counts
            (Linear, Conv*, also normalization layers if present). For a layer
            under ``weight_norm`` or ``spectral_norm`` the norm is that of the
            weight its forward uses (not of the stored originals).

    Returns:
        :class:`WeightNorms`.

    Raises:
        UsageError: ``model`` is not a module, has no weight, or has an
            uninitialised lazy weight (run one forward pass first).
    """
    if not isinstance(model, nn.Module):
        raise UsageError(f"weight_norms: expected a torch.nn.Module, got {type(model).__name__}")
    per_layer: dict[str, float] = {}
    with torch.no_grad():
        for name, module in model.named_modules():
            w = _effective_weight(module)
            if isinstance(w, UninitializedParameter):
                raise UsageError(
                    f"weight_norms: layer {name or type(module).__name__!r} is lazy and not initialised yet; "
                    "run one forward pass first"
                )
            if isinstance(w, torch.Tensor):
                per_layer[name or "weight"] = float(torch.linalg.vector_norm(w.to(torch.float64)))
    if not per_layer:
        raise UsageError(f"weight_norms: {type(model).__name__} has no submodule with a 'weight' parameter")
    return WeightNorms(value=math.sqrt(sum(v * v for v in per_layer.values())), per_layer=per_layer)


def replica_weight_norms(
    model: nn.Module, params: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """:func:`weight_norms` of ``E`` replicas from their stacked parameters (name -> ``(E, *shape)``).

    Returns:
        float64 ``(E,)`` norms of all weights together, and module name -> ``(E,)`` norms in
        model order (as :class:`WeightNorms`' ``value`` and ``per_layer``; the last is ``||V||``).
    """
    per_layer: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, module in model.named_modules():
            w = module._parameters.get("weight") if hasattr(module, "_parameters") else None
            if isinstance(w, torch.Tensor):
                stacked = params[f"{name}.weight" if name else "weight"].detach().to(torch.float64)
                per_layer[name or "weight"] = torch.linalg.vector_norm(stacked.reshape(stacked.shape[0], -1), dim=1)
    if not per_layer:
        raise UsageError(f"weight_norms: {type(model).__name__} has no submodule with a 'weight' parameter")
    value = torch.stack([v * v for v in per_layer.values()]).sum(0).sqrt()
    return value, per_layer
