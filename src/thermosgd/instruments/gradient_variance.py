"""Variance of per-sample gradients (the quantity SGD's thermophoresis decreases, Sec. 5).

Normalization (``convention``):

* ``"unbiased"`` (default): ``g_i`` is the gradient of the loss on sample ``i`` alone,
  and for every parameter entry the variance is the unbiased sample variance
  ``1/(N-1) * sum_i (g_i - mean_g)**2`` over the ``N`` samples of the batch.
  This estimates ``var[grad of one sample's loss]``; the variance of a size-``B``
  minibatch gradient is this divided by ``B`` (Eq. 17-18).
* ``"backpack"``: BackPACK's ``Variance`` extension. It uses the individual
  gradients of the *mean* loss, ``g_i / N``, and the biased ``1/N`` normalization:
  ``1/N * sum_i (g_i/N - mean_g/N)**2 = (N-1)/N**3 * unbiased``.
* ``"biased"``: the population variance ``1/N * sum_i (g_i - mean_g)**2``.

All three come from the one moment algebra of :mod:`thermosgd.instruments._moments`.

Both are averaged over all parameter entries (every entry weighs the same) for the
headline number, and over the entries of each layer for the per-layer breakdown.

Per-sample gradients come from ``torch.func`` (vmap over grad) for any model. When all
trainable parameters sit in ``nn.Linear`` and ``nn.Conv2d`` layers, one batched backward
pass with layer inputs and output gradients from hooks suffices (BackPACK's method):
closed-form sums for Linear, per-sample gradients by one bmm per kernel offset for Conv2d.

Per-sample gradients presume a forward pass that treats the samples of a batch
independently. BatchNorm and Dropout in training mode are refused by type. A
forward that mixes samples in other ways (``x - x.mean(0)``) is caught on the fast
path: sample 0's gradient of the layer the forward calls last, taken from the batched
pass, is compared with a pass of sample 0 alone, and a mismatch is refused. On the ``torch.func`` path
(``fast=False``, or layers other than Linear/Conv2d) each sample runs as a batch of
its own, so such mixing cannot be seen: the result is then that of a loop over
single samples, whatever the model does to larger batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from thermosgd.errors import UsageError
from thermosgd.instruments import _moments
from thermosgd.instruments._checks import (
    batch_size,
    call_loss,
    check_chunk_size,
    forward,
    loss_callable,
    model_dtype,
    output_tensor,
    per_sample_safe,
    trainable_parameters,
)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Convention = _moments.Convention


@dataclass(frozen=True)
class GradientVariance:
    """Result of :func:`gradient_variance`.

    Attributes:
        value: mean over all trainable parameter entries of the per-entry variance.
        per_layer: module name -> mean of the per-entry variance over that module's
            trainable parameters (weight and bias together).
        batch_size: number of samples ``N`` the variance was taken over.
        convention: ``"unbiased"``, ``"biased"`` or ``"backpack"`` (see the module docstring).
    """

    value: float
    per_layer: dict[str, float]
    batch_size: int
    convention: str

    def to_record(self, name: str) -> dict[str, float | dict[str, float]]:
        return {name: self.value, f"{name}_layer": self.per_layer}


def _one_sample_loss(
    loss_fn: LossFn, output: torch.Tensor, target: torch.Tensor, instrument: str = "gradient_variance"
) -> torch.Tensor:
    """Scalar loss of one sample; ``output`` already has its batch dim of 1, ``target`` not."""
    return call_loss(loss_fn, output_tensor(output, instrument), target.unsqueeze(0), instrument)


def per_sample_gradients(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    chunk_size: int | None = None,
) -> dict[str, torch.Tensor]:
    """Gradient of the loss on each sample alone, with ``torch.func`` (vmap over grad).

    Args:
        model: any module whose forward treats samples independently (no BatchNorm or
            Dropout in training mode).
        loss_fn: ``loss_fn(outputs, targets) -> scalar``, e.g. ``nn.CrossEntropyLoss()``;
            it is called on batches of one sample, so "mean" and "sum" reductions agree.
        inputs: ``(N, *input_shape)``.
        targets: ``(N, *target_shape)``.
        chunk_size: samples per vmap chunk, to bound memory (``None``: all at once).

    Returns:
        Trainable parameter name -> ``(N, *param.shape)`` per-sample gradients.
    """
    name = "per_sample_gradients"
    params = trainable_parameters(model, name)
    loss_callable(loss_fn, name)
    batch_size(inputs, targets, name)
    per_sample_safe(model, name)
    inputs, targets = model_dtype(model, inputs, "inputs", name), model_dtype(model, targets, "targets", name)
    params = {k: p.detach() for k, p in params.items()}
    frozen = {k: p.detach() for k, p in model.named_parameters() if k not in params}
    buffers = {k: b.detach() for k, b in model.named_buffers()}

    def sample_loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _one_sample_loss(loss_fn, functional_call(model, (p, frozen, buffers), (x.unsqueeze(0),)), y, name)

    try:
        return vmap(grad(sample_loss), in_dims=(None, 0, 0), chunk_size=chunk_size)(params, inputs, targets)
    except UsageError:
        raise
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:  # an op torch.func cannot batch,
        # or a shape or dtype error in the model
        raise UsageError(f"{name}: cannot compute per-sample gradients for this model: {exc}") from exc


def _moments_vmap(model, loss_fn, inputs, targets, chunk_size) -> dict[str, tuple[float, int]]:
    """Per parameter: summed squared deviations ``M2 = sum_entries sum_i (g_i - mean)^2`` and size.

    Chunks of per-sample gradients (torch.func) are merged exactly (:func:`_moments.merge`),
    so only one chunk is in memory at a time.
    """
    n = inputs.shape[0]
    step = n if chunk_size is None else max(1, int(chunk_size))
    acc: dict[str, tuple[torch.Tensor, torch.Tensor, int]] = {}
    for start in range(0, n, step):
        grads = per_sample_gradients(model, loss_fn, inputs[start : start + step], targets[start : start + step])
        for pname, g in grads.items():
            part = (g.mean(dim=0), _moments.deviations(g.unsqueeze(0), per_entry=True)[0], g.shape[0])
            acc[pname] = part if pname not in acc else _moments.merge(acc[pname], part)
    return {pname: (float(m2.sum()), mean.numel()) for pname, (mean, m2, _) in acc.items()}


def _supported(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return (
        isinstance(module, nn.Conv2d)
        and module.groups == 1
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
    )


def _conv2d_weight_grads(x: torch.Tensor, delta: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """Per-sample Conv2d weight gradients ``(N, C_out, C_in, kh, kw)`` (:func:`_moments.conv2d_weight_grads`)."""
    return _moments.conv2d_weight_grads(x, delta, conv.kernel_size, conv.stride, conv.padding, conv.dilation)


def _moments_hooks(model, loss_fn, inputs, targets) -> dict[str, tuple[float, int]] | None:
    """Same as :func:`_moments_vmap` from one batched backward pass, or None if not applicable.

    Applies when every trainable parameter is the weight or bias of an ``nn.Linear`` or
    ``nn.Conv2d`` (groups 1, zero padding) that is called once per forward. With
    ``delta_i`` the gradient of sample i's loss with respect to the layer output:

    * Linear on ``(N, features)``: the per-sample weight gradient is ``delta_i x_i^T``, and
      ``sum_i ||delta_i x_i^T - mean||^2 = sum_i ||delta_i||^2 ||x_i||^2 - N ||mean||^2``
      (float64; per-sample gradients never formed);
    * Linear on ``(N, ..., features)``: ``delta_i^T x_i`` summed over the extra dims, by bmm;
    * Conv2d: per-sample gradients by one bmm per kernel offset (:func:`_conv2d_weight_grads`).
    """
    params = {id(p): name for name, p in model.named_parameters() if p.requires_grad}
    owners: dict[int, list[tuple[str, nn.Module]]] = {}
    for mname, module in model.named_modules(remove_duplicate=False):
        for p in module._parameters.values():
            if p is not None and id(p) in params:
                owners.setdefault(id(p), []).append((mname, module))
    layers: dict[str, nn.Module] = {}
    for found in owners.values():
        if len(found) != 1 or not _supported(found[0][1]):
            return None
        layers[found[0][0]] = found[0][1]
    seen: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {name: [] for name in layers}

    called: list[str] = []  # layer names in the order the forward calls them

    def hook_for(name: str):
        def hook(module, args, output):
            seen[name].append((args[0], output))
            called.append(name)
            return output.clone()  # later in-place ops act on the clone, not on what we differentiate

        return hook

    handles = [m.register_forward_hook(hook_for(name)) for name, m in layers.items()]
    try:
        with torch.enable_grad():
            out = forward(model, inputs, "gradient_variance")
    finally:
        for h in handles:
            h.remove()
    if any(len(calls) != 1 for calls in seen.values()):
        return None  # a layer applied several times: its per-sample gradient sums the calls
    if out.ndim == 0 or out.shape[0] != inputs.shape[0]:
        raise UsageError(
            f"gradient_variance: the model's output {tuple(out.shape)} has no leading batch "
            f"dimension of {inputs.shape[0]}"
        )
    try:
        losses = vmap(lambda o, t: _one_sample_loss(loss_fn, o.unsqueeze(0), t))(out, targets)
    except UsageError:
        raise
    except (RuntimeError, TypeError, ValueError) as exc:
        raise UsageError(
            f"gradient_variance: cannot take per-sample losses of outputs {tuple(out.shape)}: "
            f"{str(exc).strip().splitlines()[0]}"
        ) from exc
    deltas = torch.autograd.grad(losses.sum(), [seen[name][0][1] for name in layers])
    last = called[-1]
    _refuse_sample_mixing(
        model, loss_fn, inputs, targets, last, layers[last], seen[last][0][0], deltas[list(layers).index(last)]
    )
    result: dict[str, tuple[float, int]] = {}
    for (name, module), delta in zip(layers.items(), deltas):
        prefix = f"{name}." if name else ""
        m2 = layer_deviations(module, seen[name][0][0].detach().unsqueeze(0), delta.unsqueeze(0))
        for pname, p in module.named_parameters(recurse=False):
            if p.requires_grad:
                result[prefix + pname] = (float(m2[pname][0]), p.numel())
    order = [name for name, p in model.named_parameters() if p.requires_grad]
    return {name: result[name] for name in order}


def layer_deviations(module: nn.Module, x: torch.Tensor, delta: torch.Tensor) -> dict[str, torch.Tensor]:
    """``M2`` of the per-sample gradients of a layer's ``weight`` and ``bias``, for ``E`` replicas.

    The layer-type part of the moment algebra (:mod:`thermosgd.instruments._moments`),
    shared by the single-model hooks path (``E = 1``) and the ensembles.

    Args:
        module: ``nn.Linear`` (extra dims between samples and features are positions),
            ``nn.Conv2d`` (groups 1, zero padding) or ``nn.LayerNorm``.
        x: ``(E, n, ...)`` the layer's inputs (LayerNorm: its normalized input ``x̂``).
        delta: ``(E, n, ...)`` gradients of each sample's loss with respect to the layer's output.

    Returns:
        ``"weight"`` and ``"bias"`` (where the layer has them) -> float64 ``(E,)``.
    """
    E, n = x.shape[:2]
    out: dict[str, torch.Tensor] = {}
    if isinstance(module, nn.Conv2d):
        out["weight"] = _moments.deviations(
            _conv2d_weight_grads(x.flatten(0, 1), delta.flatten(0, 1), module).reshape(E, n, -1)
        )
        bias_g = delta.sum((3, 4))
    elif isinstance(module, nn.LayerNorm):  # per sample: Σ_positions δ ⊙ x̂ and Σ_positions δ
        shape = (E, n, -1, *module.normalized_shape)
        out["weight"] = _moments.deviations((delta * x).reshape(shape).sum(2))
        bias_g = delta.reshape(shape).sum(2)
    else:
        positions = x.dim() > 3
        xx = x.reshape(E, n, -1, x.shape[-1]) if positions else x
        dd = delta.reshape(E, n, -1, delta.shape[-1]) if positions else delta
        out["weight"] = _moments.linear_weight_deviations(xx, dd)
        bias_g = dd.sum(2) if positions else dd
    if getattr(module, "bias", None) is not None:
        out["bias"] = _moments.deviations(bias_g.reshape(E, n, -1))
    if getattr(module, "weight", None) is None:
        del out["weight"]
    return out


def _first_sample_grads(module: nn.Module, x: torch.Tensor, delta: torch.Tensor) -> list[torch.Tensor]:
    """Sample 0's gradients of ``module``'s trainable weight and bias, from the batched pass."""
    x = x.detach()
    if isinstance(module, nn.Conv2d):
        w, b = _conv2d_weight_grads(x[:1], delta[:1], module)[0], delta[0].sum((1, 2))
    elif x.ndim == 2:
        w, b = torch.outer(delta[0], x[0]), delta[0]
    else:
        x3, d3 = x[:1].reshape(-1, x.shape[-1]), delta[:1].reshape(-1, delta.shape[-1])
        w, b = d3.T @ x3, d3.sum(0)
    return [g for g, p in ((w, module.weight), (b, module.bias)) if p is not None and p.requires_grad]


def _refuse_sample_mixing(
    model, loss_fn, inputs, targets, name: str, module: nn.Module, x: torch.Tensor, delta: torch.Tensor
) -> None:
    """Refuse a forward that couples the samples of a batch (e.g. ``x - x.mean(0)``).

    Per-sample gradients from one batched pass are right only if sample i's loss
    depends on sample i alone. Then a pass of sample 0 by itself gives the same
    gradient for the layer the forward calls last (``name``): coupling anywhere
    before it changes that layer's input, coupling after it changes its output
    gradient. Cheap: a forward of one sample and a backward through one layer.
    """
    batched = _first_sample_grads(module, x, delta)
    params = [p for p in (module.weight, module.bias) if isinstance(p, torch.Tensor) and p.requires_grad]
    with torch.enable_grad():
        loss = _one_sample_loss(loss_fn, forward(model, inputs[:1], "gradient_variance"), targets[0])
        alone = torch.autograd.grad(loss, params, allow_unused=True)
    gap2 = norm2 = 0.0
    for a, b in zip(batched, alone):
        b = torch.zeros_like(a) if b is None else b
        gap2 += float(torch.sub(a, b).square().sum())
        norm2 += max(float(a.square().sum()), float(b.square().sum()))
    if not math.isfinite(norm2):
        return  # a non-finite loss: nothing to compare (the variance comes out non-finite anyway)
    rtol = 1e-3 if params[0].dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-7
    if not math.sqrt(gap2) <= rtol * math.sqrt(norm2) + 1e-30:  # "not <=": a NaN gap is a mismatch too
        raise UsageError(
            "gradient_variance: the model's forward mixes the samples of a batch (sample 0's gradient of layer "
            f"'{name}' in the batch differs from its gradient alone by {math.sqrt(gap2 / max(norm2, 1e-300)):.2g} "
            "relative), so per-sample gradients are undefined; make forward treat samples independently"
        )


def gradient_variance(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    convention: Convention = "unbiased",
    chunk_size: int | None = None,
    fast: bool = True,
) -> GradientVariance:
    """Variance of the per-sample gradients over a batch, averaged over parameter entries.

    Args:
        model: module whose trainable parameters are measured (its weights are not changed,
            and no ``.grad`` is written).
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` (mean or sum reduction).
        inputs: ``(N, *input_shape)`` with ``N >= 2``; floating-point inputs of another
            dtype than the model's parameters are cast to it.
        targets: ``(N, *target_shape)``; floating-point targets are cast likewise.
        convention: ``"unbiased"`` (1/(N-1), per-sample losses), ``"biased"`` (1/N) or
            ``"backpack"`` (1/N, individual gradients of the mean loss, as BackPACK's ``Variance``).
        chunk_size: samples whose gradients are held in memory at once (``None``: all);
            chunks are merged exactly (pairwise mean/variance update).
        fast: when all trainable parameters sit in ``nn.Linear`` or ``nn.Conv2d`` layers,
            use one batched backward pass with closed forms (Linear) or bmm (Conv2d)
            instead of vmap (same numbers, several times faster; ``False`` forces torch.func).

    Returns:
        :class:`GradientVariance` with the overall mean and the per-layer means.

    Raises:
        UsageError: bad arguments, a model whose forward or loss fails on these
            inputs, or a forward that mixes samples (see the module docstring for
            where that can be detected).
    """
    if convention not in _moments.CONVENTIONS:
        raise UsageError(
            f"gradient_variance: convention must be one of {', '.join(_moments.CONVENTIONS)}, got {convention!r}"
        )
    n = batch_size(inputs, targets, "gradient_variance", at_least=2)
    check_chunk_size(chunk_size, "gradient_variance")
    trainable_parameters(model, "gradient_variance")
    loss_callable(loss_fn, "gradient_variance")
    per_sample_safe(model, "gradient_variance")
    inputs = model_dtype(model, inputs, "inputs", "gradient_variance")
    targets = model_dtype(model, targets, "targets", "gradient_variance")
    moments = _moments_hooks(model, loss_fn, inputs, targets) if fast else None
    if moments is None:
        moments = _moments_vmap(model, loss_fn, inputs, targets, chunk_size)
    m2 = {pname: torch.tensor([value], dtype=torch.float64) for pname, (value, _) in moments.items()}
    total_t, layers_t = _moments.layer_means(m2, {pname: size for pname, (_, size) in moments.items()}, n, convention)
    total, per_layer = float(total_t[0]), {layer: float(v[0]) for layer, v in layers_t.items()}
    return GradientVariance(value=total, per_layer=per_layer, batch_size=n, convention=convention)


def replica_per_sample_gradients(
    model: nn.Module,
    params: dict[str, torch.Tensor],
    buffers: dict[str, torch.Tensor],
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """:func:`per_sample_gradients` of ``E`` replicas at once (vmap over replicas of vmap over samples).

    Args:
        model: the architecture; its own parameters are not used (``torch.func.functional_call``).
        params: name -> ``(E, *param.shape)`` stacked trainable parameters.
        buffers: name -> ``(E, *buffer.shape)``.
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` on a batch of one sample.
        inputs: ``(E, n, *input_shape)``; targets: ``(E, n, *target_shape)``.

    Returns:
        name -> ``(E, n, *param.shape)``.
    """

    def sample_loss(p, b, x, y):
        return _one_sample_loss(loss_fn, functional_call(model, (p, b), (x.unsqueeze(0),)), y, "grad_var")

    per_replica = vmap(grad(sample_loss), in_dims=(None, None, 0, 0))
    params = {k: v.detach() for k, v in params.items()}
    try:
        return vmap(per_replica)(params, buffers, inputs, targets)
    except UsageError:
        raise
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        raise UsageError(f"grad_var: cannot compute per-sample gradients for this model: {exc}") from exc


def replica_gradient_variance(
    grads: dict[str, torch.Tensor], *, convention: Convention = "unbiased"
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """:func:`gradient_variance` of ``E`` replicas from their per-sample gradients.

    Args:
        grads: parameter name -> ``(E, n, *param.shape)``, in model order (as
            :func:`replica_per_sample_gradients` returns them).

    Returns:
        float64 ``(E,)`` mean over all parameter entries, and layer name -> ``(E,)`` per layer.
    """
    m2 = {k: _moments.deviations(g) for k, g in grads.items()}
    n = next(iter(grads.values())).shape[1]
    return _moments.layer_means(m2, {k: g[0, 0].numel() for k, g in grads.items()}, n, convention)


class _Stacked(Protocol):
    """What :func:`replica_gradient_variance_batched` needs of an ensemble
    (:class:`thermosgd.deep.ensemble.Ensemble`; duck-typed, as instruments sit below ``deep``)."""

    layers: list[tuple[str, nn.Module]] | None
    params: dict[str, torch.Tensor]

    def forward(self, x: torch.Tensor, capture: dict | None = None) -> torch.Tensor: ...


def replica_gradient_variance_batched(
    ens: _Stacked, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The hooks path of :func:`gradient_variance` (unbiased) for all replicas of an ensemble at once.

    Layer inputs (LayerNorm: its normalized input) and the gradients of the per-sample
    losses with respect to the layer outputs, captured by the ensemble's batched forward
    pass, go through :func:`layer_deviations` and :mod:`thermosgd.instruments._moments`.

    Args:
        ens: an ensemble with batched layers (``ens.layers`` not None) whose
            ``forward(x, capture=seen)`` stores layer name -> ``(input, output)``.
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` on one sample.
        x: ``(E, n, *input_shape)``; y: ``(E, n, *target_shape)``.

    Returns:
        float64 ``(E,)`` mean over parameter entries, and layer name -> ``(E,)``.
    """
    assert ens.layers is not None
    n = x.shape[1]
    seen: dict = {}
    with torch.enable_grad():
        out = ens.forward(x, capture=seen)
        per_sample = vmap(vmap(lambda o, t: _one_sample_loss(loss_fn, o.unsqueeze(0), t)))(out, y)
        layers = [(name, layer) for name, layer in ens.layers if name in seen and isinstance(seen[name], tuple)]
        deltas = torch.autograd.grad(per_sample.sum(), [seen[name][1] for name, _ in layers])
    m2: dict[str, torch.Tensor] = {}  # parameter name -> (E,) summed squared deviations
    for (name, layer), delta in zip(layers, deltas):
        prefix = f"{name}." if name else ""
        for pname, value in layer_deviations(layer, seen[name][0].detach(), delta).items():
            m2[prefix + pname] = value
    sizes = {pname: p[0].numel() for pname, p in ens.params.items()}
    return _moments.layer_means({k: m2[k] for k in ens.params}, sizes, n, "unbiased")
