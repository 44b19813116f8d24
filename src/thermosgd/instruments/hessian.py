"""Hessian trace: a Hutchinson estimate, and the A.5 upper bound (Eq. 62) for ReLU MLPs.

The bound, per sample ``mu`` of a ReLU MLP ``z = W^L relu(... relu(W^1 x + b^1) ...) + b^L``
with ``D_n`` the 0/1 diagonal of active units of hidden layer ``n``::

    Tr(H^mu) <= Tr(P^mu) * sum_l  u_{l-1} * prod_{n=l+1}^{L} ||W^n D_{n-1}||_F^2

where ``P^mu`` is the Hessian of the loss with respect to the outputs (Eq. 41) and
``u_{l-1}`` bounds the squared norm of layer ``l``'s input:
``u_0 = ||x||^2``, ``u_n = ||D_n W^n||_F^2 * u_{n-1}``. This is Eq. 62 with
``||X||_2`` read as ``||x^mu||_2^2`` (what Eq. 59 needs), ``||sigma W^n||_F = ||D_n W^n||_F``
(rows of units that fire) and ``||W^n sigma'||_F = ||W^n D_{n-1}||_F`` (columns fed by
units that fire).

Biases, which the paper leaves out, are included by augmenting each affine map,
``W~^n = [W^n, b^n]`` acting on ``[h; 1]``: then ``u_0 = ||x||^2 + 1`` and
``u_n = ||D_n W~^n||_F^2 u_{n-1} + 1`` (the ``+1`` terms only where the next layer has a
bias). Without biases this is Eq. 62 exactly.

For a ReLU net the term ``grad_z L . d^2 z / dw^2`` dropped in Eq. 45 has zero trace
(``z`` is piecewise linear in each single parameter), so ``Tr(H^mu) = Tr(P K)`` and the
bound is a true upper bound on the exact trace wherever no pre-activation is exactly 0.
The batch Hessian of a mean loss is the mean of the per-sample ones, so the batch bound
is the mean of the per-sample bounds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad, vjp, vmap

from thermosgd.errors import UsageError
from thermosgd.instruments._checks import (
    batch_size,
    call_loss,
    loss_callable,
    mlp_inputs,
    model_dtype,
    output_tensor,
    per_sample_safe,
    probes_fit,
    trainable_parameters,
)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TraceEstimate:
    """Result of :func:`hessian_trace`.

    Attributes:
        value: Hutchinson estimate of ``Tr(H)``, the mean of ``v^T H v`` over the probes.
        stderr: its standard error, ``std(v^T H v, ddof=1) / sqrt(samples)``.
        samples: number of Rademacher probe vectors.
    """

    value: float
    stderr: float
    samples: int

    def to_record(self, name: str) -> dict[str, float | dict[str, float]]:
        return {name: self.value, f"{name}_stderr": self.stderr}


@dataclass(frozen=True)
class TraceBound:
    """Result of :func:`hessian_trace_bound`.

    Attributes:
        value: bound on ``Tr(H)`` of the batch loss (mean reduction: mean over samples).
        per_sample: ``(N,)`` the bound on each sample's ``Tr(H^mu)`` (Eq. 62).
    """

    value: float
    per_sample: torch.Tensor

    def to_record(self, name: str) -> dict[str, float | dict[str, float]]:
        return {name: self.value}


def rademacher(
    samples: int, dim: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``(samples, dim)`` independent +-1 entries (the probes :func:`hessian_trace` uses)."""
    return torch.randint(0, 2, (samples, dim), generator=generator).to(dtype) * 2 - 1


def hessian_trace(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    samples: int = 64,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
) -> TraceEstimate:
    """Hutchinson estimate of the trace of the Hessian of the batch loss.

    ``Tr(H) = E[v^T H v]`` for Rademacher ``v``; each ``H v`` is a reverse-over-reverse
    product (``torch.func.vjp`` of ``grad``; ``H`` is symmetric), vmapped over the probes.

    Args:
        model: module; Hessian with respect to its trainable parameters.
        loss_fn: ``loss_fn(model(inputs), targets) -> scalar``, the loss whose Hessian is taken.
        inputs: ``(N, *input_shape)``.
        targets: ``(N, *target_shape)``.
        samples: number of probe vectors (>= 2 for a standard error).
        generator: source of the probes; the probes are ``rademacher(samples, P, generator)``
            split over the trainable parameters in ``named_parameters()`` order.
        chunk_size: probes per vmap chunk, to bound memory.

    Returns:
        :class:`TraceEstimate` with the estimate and its standard error.
    """
    name = "hessian_trace"
    params = trainable_parameters(model, name)
    loss_callable(loss_fn, name)
    batch_size(inputs, targets, name)
    # BatchNorm in training mode would also update its running statistics inside torch.func.
    per_sample_safe(model, name, "hessian_trace does not support it in training mode")
    inputs, targets = model_dtype(model, inputs, "inputs", name), model_dtype(model, targets, "targets", name)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
        raise UsageError(f"{name}: samples must be >= 2 for a standard error, got {samples}")
    params = {k: p.detach() for k, p in params.items()}
    probes_fit(samples, chunk_size, params, name, inputs.numel())
    frozen = {k: p.detach() for k, p in model.named_parameters() if k not in params}
    buffers = {k: b.detach() for k, b in model.named_buffers()}

    def loss(p: dict[str, torch.Tensor]) -> torch.Tensor:
        return call_loss(
            loss_fn, output_tensor(functional_call(model, (p, frozen, buffers), (inputs,)), name), targets, name
        )

    first = next(iter(params.values()))
    # Drawn on the CPU (the generator's device) and moved: the same probes on every device.
    flat = rademacher(samples, sum(p.numel() for p in params.values()), generator, first.dtype).to(first.device)
    probes, start = {}, 0
    for k, p in params.items():
        probes[k] = flat[:, start : start + p.numel()].reshape(samples, *p.shape)
        start += p.numel()

    def quadratic_form(v: dict[str, torch.Tensor]) -> torch.Tensor:
        hv = hvp(v)[0]
        return sum((v[k] * hv[k]).sum() for k in params)

    try:
        hvp = vjp(grad(loss), params)[1]
        values = vmap(quadratic_form, chunk_size=chunk_size)(probes).to(torch.float64)
    except UsageError:
        raise
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        raise UsageError(f"{name}: cannot form Hessian-vector products for this model: {exc}") from exc
    return TraceEstimate(
        value=float(values.mean()),
        stderr=float(values.std(correction=1) / math.sqrt(samples)),
        samples=samples,
    )


def _mlp_layers(model: nn.Module) -> list[nn.Linear]:
    """The Linear layers of a ReLU MLP (Linear, ReLU, Linear, ..., Linear), else UsageError."""

    def leaves(m: nn.Module, prefix: str):
        if isinstance(m, nn.Sequential):
            for name, child in m.named_children():
                yield from leaves(child, f"{prefix}.{name}" if prefix else name)
        else:
            yield prefix or type(m).__name__, m

    if not isinstance(model, nn.Sequential):
        raise UsageError(
            "hessian_trace_bound: needs a ReLU MLP written as nn.Sequential of Linear and ReLU layers, "
            f"got {type(model).__name__}"
        )
    linears: list[nn.Linear] = []
    expect_linear = True
    for name, layer in leaves(model, ""):
        if isinstance(layer, (nn.Flatten, nn.Identity)) and not linears:
            continue
        ok = isinstance(layer, nn.Linear) if expect_linear else type(layer) is nn.ReLU
        if not ok:
            raise UsageError(
                f"hessian_trace_bound: layer '{name}' ({type(layer).__name__}) is not part of a ReLU MLP; "
                "the bound (Eq. 62) covers alternating nn.Linear and nn.ReLU layers only"
            )
        if expect_linear:
            linears.append(layer)
        expect_linear = not expect_linear
    if expect_linear or not linears:
        raise UsageError("hessian_trace_bound: the MLP must end with an nn.Linear layer")
    return linears


def _output_hessian_trace(loss_fn: LossFn, z: torch.Tensor) -> torch.Tensor:
    """``(N,)`` trace of each sample's Hessian of the loss with respect to the outputs z: (N, C)."""
    reduction = getattr(loss_fn, "reduction", None)
    if isinstance(loss_fn, nn.CrossEntropyLoss):
        if loss_fn.weight is not None:
            raise UsageError("hessian_trace_bound: class weights in CrossEntropyLoss are not supported")
        p = torch.softmax(z, dim=1)
        tr = 1 - (p * p).sum(dim=1)  # Tr(diag(p) - p p^T), Eq. 41
        scale = 1.0
    elif isinstance(loss_fn, nn.BCEWithLogitsLoss):
        if loss_fn.weight is not None or loss_fn.pos_weight is not None:
            raise UsageError("hessian_trace_bound: weights in BCEWithLogitsLoss are not supported")
        p = torch.sigmoid(z)
        tr = (p * (1 - p)).sum(dim=1)
        scale = 1.0 / z.shape[1]  # a "mean" loss also averages over the C output entries
    else:
        raise UsageError(
            "hessian_trace_bound: loss_fn must be nn.CrossEntropyLoss or nn.BCEWithLogitsLoss, "
            f"got {type(loss_fn).__name__}"
        )
    if reduction == "sum":
        return tr
    if reduction != "mean":
        raise UsageError(f"hessian_trace_bound: loss reduction must be 'mean' or 'sum', got {reduction!r}")
    return tr * scale


def stacked_trace_bound(
    loss_fn: LossFn, x: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor | None]
) -> torch.Tensor:
    """Per-sample bounds (Eq. 62) of ``E`` ReLU MLPs at once, from their stacked weights.

    The one implementation of the bound: :func:`hessian_trace_bound` calls it with
    ``E = 1``, the ensembles with their replica dim.

    Args:
        loss_fn: as in :func:`hessian_trace_bound`.
        x: ``(E, N, d)`` flattened inputs.
        weights: per Linear layer, ``(E, out, in)``.
        biases: per Linear layer, ``(E, out)`` or None.

    Returns:
        float64 ``(E, N)``: the bound on each sample's ``Tr(H^mu)``.
    """
    with torch.no_grad():
        h = x.to(torch.float64)
        Ws = [w.detach().to(torch.float64) for w in weights]
        bs = [None if b is None else b.detach().to(torch.float64) for b in biases]
        has_bias = [b is not None for b in bs]
        u = (h * h).sum(-1) + float(has_bias[0])  # bound on ||[x; 1]||^2, (E, N)
        u_in: list[torch.Tensor] = []  # u_{l-1} for each layer l
        masks: list[torch.Tensor] = []  # D_n for hidden layers n = 1..L-1
        for k, (w, b) in enumerate(zip(Ws, bs)):
            u_in.append(u)
            a = h @ w.mT + (b.unsqueeze(1) if b is not None else 0)
            if k == len(Ws) - 1:
                z = a
                break
            d = (a > 0).to(torch.float64)
            masks.append(d)
            h = a * d
            row2 = (w * w).sum(-1) + (b * b if b is not None else 0)  # ||row of [W b]||^2, (E, out)
            u = (d @ row2.unsqueeze(-1)).squeeze(-1) * u + float(has_bias[k + 1])
        # backward factors ||W^n D_{n-1}||_F^2, n = 2..L, and their suffix products
        tail = torch.ones_like(u)
        trace_k = torch.zeros_like(u)
        for k in range(len(Ws) - 1, -1, -1):
            trace_k = trace_k + u_in[k] * tail
            if k > 0:
                col2 = (Ws[k] * Ws[k]).sum(dim=1)  # (E, in)
                tail = tail * (masks[k - 1] @ col2.unsqueeze(-1)).squeeze(-1)
        E, N = u.shape
        return _output_hessian_trace(loss_fn, z.reshape(E * N, -1)).reshape(E, N) * trace_k


def hessian_trace_bound(model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor) -> TraceBound:
    """Upper bound (A.5, Eq. 62) on the Hessian trace of a ReLU MLP's batch loss.

    No targets are needed: the output Hessian ``P`` of softmax cross-entropy and of the
    logistic loss does not depend on the labels.

    Args:
        model: ``nn.Sequential`` of ``nn.Linear`` and ``nn.ReLU`` alternating (an optional
            leading ``nn.Flatten``), ending with ``nn.Linear``; biases optional.
        loss_fn: ``nn.CrossEntropyLoss()`` (outputs ``(N, C)`` logits, Eq. 37-41) or
            ``nn.BCEWithLogitsLoss()`` (outputs ``(N, C)``, independent logistic losses).
        inputs: ``(N, *input_shape)``; flattened to ``(N, d)``.

    Returns:
        :class:`TraceBound`: the batch bound (mean over samples for a mean loss, sum for a
        sum loss) and the per-sample bounds ``(N,)``.
    """
    linears = _mlp_layers(model)
    mlp_inputs(inputs, linears[0], linears, "hessian_trace_bound")
    x = inputs.reshape(1, inputs.shape[0], -1)
    weights = [layer.weight.unsqueeze(0) for layer in linears]
    biases = [None if layer.bias is None else layer.bias.unsqueeze(0) for layer in linears]
    per_sample = stacked_trace_bound(loss_fn, x, weights, biases)[0]
    value = per_sample.sum() if getattr(loss_fn, "reduction", None) == "sum" else per_sample.mean()
    return TraceBound(
        value=float(value), per_sample=per_sample.to(inputs.dtype if inputs.is_floating_point() else torch.float32)
    )
