"""Many copies of one network trained at once: every seed × learning rate of a sweep as one ensemble.

The ``E`` replicas' parameters are stacked along a leading replica dim with
``torch.func.stack_module_state``; one SGD step of the whole ensemble is one
forward pass over inputs ``(E, B, ...)``, one backward pass of the summed
per-replica losses (replicas share no parameter, so each gets exactly its own
gradient) and one in-place update with a per-replica learning rate. The forward
pass is ``vmap`` over ``torch.func.functional_call`` for any module; for an
``nn.Sequential`` of ``Linear``, ``Conv2d``, ``ReLU`` and ``Flatten`` layers (the
paper's networks) the same computation is written as batched matrix products
and a grouped convolution, which skips vmap's per-call overhead (several times
faster at the paper's small batches; the two are tested against each other).

The instruments are not here: their batched (replica) forms live next to the
single-model ones in :mod:`thermosgd.instruments` and take an ensemble's stacked
parameters (or, for the gradient variance on the batched layers, the ensemble itself).

Not bit-identical to training the runs one after another
(the sequential per-run loop, ``tests/deep/sgd_loops.py``): batched kernels sum in another order,
so curves agree to floating-point tolerance (tested), and the sequential loop
stays available as the reference.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from thermosgd.errors import UsageError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _leaves(model: nn.Module, prefix: str = ""):
    if isinstance(model, nn.Sequential):
        for name, child in model.named_children():
            yield from _leaves(child, f"{prefix}.{name}" if prefix else name)
    else:
        yield prefix, model


def batched_layers(model: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """The layers of ``model`` if it is an ``nn.Sequential`` of layers the ensemble batches
    by hand (Linear; Conv2d with groups 1 and zero padding; LayerNorm; ReLU, GELU, Tanh;
    Flatten), else None."""
    if not isinstance(model, nn.Sequential):
        return None
    layers = list(_leaves(model))
    for _, layer in layers:
        if isinstance(layer, nn.Conv2d):
            if layer.groups != 1 or layer.padding_mode != "zeros" or isinstance(layer.padding, str):
                return None
        elif type(layer) not in (nn.Linear, nn.ReLU, nn.Flatten, nn.LayerNorm, nn.GELU, nn.Tanh):
            return None
    return layers


def _flatten_dims(layer: nn.Flatten) -> tuple[int, int]:
    """An ``nn.Flatten``'s dims on per-replica tensors: shifted past the leading replica dim."""
    start, end = int(layer.start_dim), int(layer.end_dim)
    return (start + 1 if start >= 0 else start), (end + 1 if end >= 0 else end)


def _conv2d(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None, layer: nn.Conv2d) -> torch.Tensor:
    """``layer`` of every replica as one grouped convolution (groups = E): ``h (E, B, C, H, W)``,
    weights ``W (E, C', C, k, k)``, biases ``b (E, C')`` or None; returns ``(E, B, C', H', W')``.

    On the CPU in channels-last layout: oneDNN's grouped convolution in the default layout
    ran the fig2-bottom CNN's step (24 replicas of 10 channels, 8x8 images, 5x5 kernels)
    2.4-2.9x slower, and one plain convolution per replica 1.5-2x slower (measured on a
    loaded 2-core machine, one thread).
    """
    E, B = h.shape[0], h.shape[1]
    grouped = h.transpose(0, 1).reshape(B, E * h.shape[2], *h.shape[3:])
    weight = W.reshape(E * W.shape[1], *W.shape[2:])
    if h.device.type == "cpu":
        grouped = grouped.contiguous(memory_format=torch.channels_last)
        weight = weight.contiguous(memory_format=torch.channels_last)
    bias = None if b is None else b.reshape(-1)
    out = F.conv2d(grouped, weight, bias, layer.stride, layer.padding, layer.dilation, groups=E)
    return out.reshape(B, E, W.shape[1], *out.shape[2:]).transpose(0, 1)


class Ensemble:
    """``E`` replicas of one architecture with stacked parameters.

    Args:
        models: one freshly built module per replica, all of the same architecture.
        batched: use the hand-batched layers when the architecture allows
            (False: always vmap over ``functional_call``).

    Attributes:
        params: name -> ``(E, *param.shape)`` leaf tensors (requires_grad).
        buffers: name -> ``(E, *buffer.shape)``.
        layers: the batched layers, or None (vmap path).
    """

    def __init__(self, models: list[nn.Module], *, batched: bool = True):
        frozen = [k for k, p in models[0].named_parameters() if not p.requires_grad]
        if frozen:
            raise UsageError(
                f"ensemble training updates every parameter, but {frozen[0]} is frozen "
                "(requires_grad=False); train the runs one by one (ensemble=False)"
            )
        params, buffers = stack_module_state(models)
        self.params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        self.buffers = {k: v.detach() for k, v in buffers.items()}
        self.size = len(models)
        self.template = models[0]
        self.base = copy.deepcopy(models[0]).to("meta")
        self.layers = batched_layers(models[0]) if batched else None
        # Linear, ReLU and Flatten only: backpropagate by hand, without autograd's graph.
        self.by_hand = self.layers is not None and all(
            type(layer) in (nn.Linear, nn.ReLU, nn.Flatten) for _, layer in self.layers
        )
        self._steps: list[tuple] | None = None

    def forward(self, x: torch.Tensor, capture: dict | None = None) -> torch.Tensor:
        """Outputs ``(E, B, ...)`` for inputs ``(E, B, *input_shape)``.

        ``capture`` (batched layers only): filled with layer name -> (input, output)
        for Linear and Conv2d layers, (normalized input, output) for LayerNorm layers
        and name -> output for ReLU layers.
        """
        if self.layers is None:

            def one(p, b, xe):
                return functional_call(self.base, (p, b), (xe,))

            return vmap(one)(self.params, self.buffers, x)
        E = self.size
        h = x
        for name, layer in self.layers:
            prefix = f"{name}." if name else ""
            if isinstance(layer, nn.Linear):
                W, b = self.params[prefix + "weight"], self.params.get(prefix + "bias")
                flat = h.reshape(E, -1, h.shape[-1])
                out = torch.bmm(flat, W.mT) if b is None else torch.baddbmm(b.unsqueeze(1), flat, W.mT)
                out = out.reshape(*h.shape[:-1], W.shape[1])
            elif isinstance(layer, nn.Conv2d):
                out = _conv2d(h, self.params[prefix + "weight"], self.params.get(prefix + "bias"), layer)
            elif isinstance(layer, nn.ReLU):
                out = torch.relu(h)
            elif isinstance(layer, nn.LayerNorm):
                out = F.layer_norm(h, layer.normalized_shape, None, None, layer.eps)
                W, b = self.params.get(prefix + "weight"), self.params.get(prefix + "bias")
                view = (E,) + (1,) * (h.dim() - 1 - len(layer.normalized_shape)) + tuple(layer.normalized_shape)
                out = out if W is None else out * W.view(view)
                out = out if b is None else out + b.view(view)
            elif isinstance(layer, (nn.GELU, nn.Tanh)):
                out = layer(h)
            else:
                out = h.flatten(*_flatten_dims(cast(nn.Flatten, layer)))
            if capture is not None and isinstance(layer, nn.LayerNorm):
                capture[name] = (F.layer_norm(h, layer.normalized_shape, None, None, layer.eps), out)
            elif capture is not None and isinstance(layer, (nn.ReLU, nn.Linear, nn.Conv2d)):
                capture[name] = out if isinstance(layer, nn.ReLU) else (h, out)
            h = out
        return h

    def losses(self, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(E,)``: each replica's ``loss_fn(outputs, targets)`` on its own minibatch."""
        return replica_losses(loss_fn, self.forward(x), y)

    def step(
        self, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, lr: torch.Tensor, alive: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One plain SGD step of every live replica.

        Args:
            x, y: minibatches ``(E, B, ...)``.
            lr: ``(E,)`` learning rates.
            alive: ``(E,)`` bool; other replicas are not updated.

        Returns:
            The ``(E,)`` losses before the step, and which replicas were updated: the
            live ones whose loss is finite (a non-finite loss stops a replica, as in
            the sequential loop in ``tests/deep/sgd_loops.py``).
        """
        if self.by_hand:
            return self._sgd_by_hand(loss_fn, x, y, lr, alive)
        params = list(self.params.values())
        losses = self.losses(loss_fn, x, y)
        grads = torch.autograd.grad(losses.sum(), params)
        update = alive & torch.isfinite(losses.detach())
        with torch.no_grad():
            if not bool(update.all()):  # frozen replicas: step 0, and no NaN × 0
                lr = torch.where(update, lr, 0.0)
                grads = tuple(torch.where(update.view(-1, *[1] * (g.dim() - 1)), g, 0.0) for g in grads)
            scales = [lr.view(-1, *[1] * (g.dim() - 1)) for g in grads]
            torch._foreach_addcmul_(params, grads, scales, value=-1.0)  # p -= lr * grad
        return losses.detach(), update

    def weighted_step(
        self,
        sample_losses: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        y: torch.Tensor,
        w: torch.Tensor,
        alive: torch.Tensor,
        extra: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``θ_e ← θ_e − Σ_i w_ei ∇ℓ(θ_e; x_ei, y_ei) − extra_e`` for every live replica.

        Every noise model of :mod:`thermosgd.deep.noise` is such a step (the learning
        rate is folded into the weights), taken by one backward pass of the weighted
        loss: no per-sample gradient is formed.

        Args:
            sample_losses: ``(outputs (E, n, ...), targets (E, n, ...)) -> (E, n)`` per-sample losses.
            x, y: ``(E, n, ...)`` samples of each replica.
            w: ``(E, n)`` per-sample weights.
            alive: ``(E,)`` bool; other replicas are not updated.
            extra: parameter name -> ``(E, *shape)`` added to the step (the "frozen" noise), or None.

        Returns:
            The ``(E,)`` mean per-sample losses before the step, and which replicas were
            updated: the live ones whose loss is finite.
        """
        params = list(self.params.values())
        with torch.enable_grad():
            each = sample_losses(self.forward(x), y)
            grads = torch.autograd.grad((each * w).sum(), params)
        losses = each.detach().mean(1)
        update = alive & torch.isfinite(losses)
        with torch.no_grad():
            steps = list(grads) if extra is None else [g + extra[k] for g, k in zip(grads, self.params)]
            if not bool(update.all()):  # frozen replicas: step 0, and no NaN × 0
                steps = [torch.where(update.view(-1, *[1] * (g.dim() - 1)), g, 0.0) for g in steps]
            torch._foreach_sub_(params, steps)
        return losses, update

    def _plan(self) -> list[tuple]:
        """The Linear/ReLU/Flatten stack as (kind, weight, bias or None, flatten dims, in-place ReLU)."""
        plan: list[tuple] = []
        layers = self.layers
        assert layers is not None
        for i, (name, layer) in enumerate(layers):
            prefix = f"{name}." if name else ""
            if isinstance(layer, nn.Linear):
                plan.append(("linear", self.params[prefix + "weight"], self.params.get(prefix + "bias"), None, False))
            elif isinstance(layer, nn.ReLU):
                # In place on a Linear's output (only this ReLU reads it, and backward
                # needs the ReLU's output alone); never on the input or a view of it.
                plan.append(("relu", None, None, None, i > 0 and isinstance(layers[i - 1][1], nn.Linear)))
            else:
                plan.append(("flatten", None, None, _flatten_dims(cast(nn.Flatten, layer)), False))
        return plan

    def _sgd_by_hand(
        self, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, lr: torch.Tensor, alive: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`step` for a Linear/ReLU/Flatten stack, written out.

        Forward, then backward with the learning rate folded into the output
        gradient (backpropagation is linear in it): ``δ = η ∂ℓ/∂out``, and layer by
        layer ``W ← W − δᵀh``, ``b ← b − Σ δ``, ``δ ← (δ W) ⊙ 1[h > 0]`` (with W
        before its update), in place; the loss's derivative comes from
        :func:`output_gradient`.
        """
        if self._steps is None:
            self._steps = self._plan()
        E = self.size
        with torch.no_grad():
            acts = [x]  # input of each layer
            h = x
            for kind, W, b, dims, in_place in self._steps:
                if kind == "linear":
                    flat = h if h.dim() == 3 else h.reshape(E, -1, h.shape[-1])
                    out = torch.bmm(flat, W.mT) if b is None else torch.baddbmm(b.unsqueeze(1), flat, W.mT)
                    h = out if h.dim() == 3 else out.reshape(*h.shape[:-1], W.shape[1])
                elif kind == "relu":
                    h = h.relu_() if in_place else torch.relu(h)
                else:
                    h = h.flatten(*dims)
                acts.append(h)
            losses, delta = output_gradient(loss_fn, h, y)
            update = alive & torch.isfinite(losses)
            view = (E,) + (1,) * (delta.dim() - 1)
            if bool(update.all()):
                delta = delta.mul_(lr.view(view))
            else:  # frozen replicas: step 0, and no NaN × 0
                delta = torch.where(update.view(view), delta * lr.view(view), 0.0)
            for i in range(len(self._steps) - 1, -1, -1):
                kind, W, b, _, _ = self._steps[i]
                h_in = acts[i]
                if kind == "linear":
                    d = delta if delta.dim() == 3 else delta.reshape(E, -1, delta.shape[-1])
                    if i > 0:
                        delta = torch.bmm(d, W)  # with W before its update
                        if h_in.dim() != 3:
                            delta = delta.reshape(h_in.shape)
                    W.baddbmm_(d.mT, h_in if h_in.dim() == 3 else h_in.reshape(E, -1, h_in.shape[-1]), alpha=-1.0)
                    if b is not None:
                        b.sub_(d.sum(1))
                elif kind == "relu":  # δ ⊙ 1[h > 0] in one pass (what autograd's ReLU backward calls)
                    delta = torch.ops.aten.threshold_backward(delta, acts[i + 1], 0)
                else:
                    delta = delta.reshape(h_in.shape)
        return losses, update

    def load_into(self, model: nn.Module, e: int) -> nn.Module:
        """Copy replica ``e``'s parameters and buffers into ``model`` (same architecture)."""
        with torch.no_grad():
            for k, p in model.named_parameters():
                p.copy_(self.params[k][e])
            for k, b in model.named_buffers():
                b.copy_(self.buffers[k][e])
        return model

    def finite(self) -> torch.Tensor:
        """``(E,)`` bool: every parameter of the replica is finite."""
        ok = torch.ones(self.size, dtype=torch.bool, device=next(iter(self.params.values())).device)
        with torch.no_grad():
            for p in self.params.values():
                ok &= torch.isfinite(p.reshape(self.size, -1)).all(1)
        return ok


_REDUCED = (nn.BCEWithLogitsLoss, nn.CrossEntropyLoss, nn.MSELoss)


def _plain(loss_fn) -> bool:
    """One of the presets' losses, unweighted, with a mean or sum reduction."""
    return (
        type(loss_fn) in _REDUCED
        and getattr(loss_fn, "reduction", None) in ("mean", "sum")
        and getattr(loss_fn, "weight", None) is None
        and getattr(loss_fn, "pos_weight", None) is None
        and getattr(loss_fn, "label_smoothing", 0.0) == 0.0
        and getattr(loss_fn, "ignore_index", -100) == -100
    )


def replica_losses(loss_fn: LossFn, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(E,)`` = ``loss_fn(out[e], y[e])`` for every replica ``e``.

    The losses of the presets (BCE-with-logits, cross-entropy, MSE, unweighted, mean or
    sum reduction) are computed per element and reduced per replica; any other loss is
    vmapped (slower by the overhead of one vmap call per step).
    """
    if not _plain(loss_fn):
        return vmap(loss_fn)(out, y)
    E = out.shape[0]
    flat_out, flat_y = out.flatten(0, 1), y.flatten(0, 1)
    if isinstance(loss_fn, nn.BCEWithLogitsLoss):
        each = F.binary_cross_entropy_with_logits(flat_out, flat_y, reduction="none")
    elif isinstance(loss_fn, nn.CrossEntropyLoss):
        each = F.cross_entropy(flat_out, flat_y, reduction="none")
    else:
        each = F.mse_loss(flat_out, flat_y, reduction="none")
    each = each.reshape(E, -1)
    return each.mean(1) if getattr(loss_fn, "reduction", "mean") == "mean" else each.sum(1)


def output_gradient(loss_fn: LossFn, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-replica losses ``(E,)`` and ``∂(Σ_e loss_e)/∂out`` (shape of ``out``).

    Closed forms for the plain losses of :func:`replica_losses` (BCE-with-logits:
    ``σ(z) − y``; cross-entropy: ``softmax(z) − onehot(y)``; MSE: ``2(z − y)``, each over
    the replica's element count for a mean); autograd through the loss alone otherwise.
    """
    E = out.shape[0]
    kind = type(loss_fn) if _plain(loss_fn) else None
    if kind is nn.BCEWithLogitsLoss or kind is nn.MSELoss:
        losses = replica_losses(loss_fn, out, y)
        grad = torch.sigmoid(out) - y if kind is nn.BCEWithLogitsLoss else 2.0 * (out - y)
    elif kind is nn.CrossEntropyLoss and y.dim() == out.dim() - 1:
        losses = replica_losses(loss_fn, out, y)
        grad = torch.softmax(out, dim=-1)
        grad.scatter_add_(-1, y.unsqueeze(-1), torch.full_like(y, -1.0, dtype=out.dtype).unsqueeze(-1))
    else:
        leaf = out.detach().requires_grad_(True)
        with torch.enable_grad():
            losses = replica_losses(loss_fn, leaf, y)
            (grad,) = torch.autograd.grad(losses.sum(), leaf)
        return losses.detach(), grad
    if getattr(loss_fn, "reduction", "mean") == "mean":
        per = out[0].numel() if kind is not nn.CrossEntropyLoss else out[0].numel() // out.shape[-1]
        grad = grad / per
    return losses, grad.reshape(E, *out.shape[1:])
