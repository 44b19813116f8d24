"""The noise models of the two-layer engine (``[train] noise``) for any model, as per-sample weights.

Each update is ``θ ← θ − Σ_i w_i ∇ℓ(θ; x_i, y_i) − ξ_frozen`` (see
:meth:`thermosgd.deep.ensemble.Ensemble.weighted_step`), with, for replicas of
learning rate η and batch size |B|:

* ``"sgd"``: a minibatch of |B| samples, ``w_i = η/|B|``;
* ``"gd"``: G fresh samples, ``w_i = η/G`` (the mean gradient ḡ: drift alone);
* ``"gaussian"``: ḡ + ξ, ξ ~ N(0, Σ̂(θ)/|B|), Σ̂ the unbiased per-sample-gradient
  covariance on the same G samples: with standard normal ``z``,
  ``ξ = (|B|(G−1))^(−1/2) Σ_i (z_i − z̄) g_i``, so ``w_i = η(1/G + (z_i − z̄)/√(|B|(G−1)))``;
* ``"frozen"``: ḡ + ξ, ξ ~ N(0, diag(σ₀²)/|B|), σ₀² each entry's unbiased per-sample
  gradient variance at initialization on G samples: ``w_i = η/G`` and
  ``ξ_frozen = η σ₀ z / √|B|`` entry by entry.

These are :mod:`thermosgd.twolayer.steps`' definitions; here they hold for any
architecture because the weights act on autograd's per-sample losses.
"""

from __future__ import annotations

import math

import torch

NOISES = ("sgd", "gd", "gaussian", "frozen")


def step_weights(noise: str, lr: torch.Tensor, batch_size: int, n: int, z: torch.Tensor | None = None) -> torch.Tensor:
    """``(E, n)`` per-sample weights of one step.

    Args:
        noise: one of :data:`NOISES`.
        lr: ``(E,)`` learning rates.
        batch_size: |B| (for "sgd" also the number of samples n).
        n: samples in the step (|B| for "sgd", G otherwise).
        z: ``(n,)`` standard normal draws ("gaussian" only).
    """
    if noise in ("sgd", "gd", "frozen"):
        return (lr / n).unsqueeze(1).expand(-1, n)
    if noise == "gaussian":
        if z is None or z.shape != (n,):
            raise ValueError(f"gaussian: z must have shape ({n},)")
        per = 1.0 / n + (z - z.mean()) / math.sqrt(batch_size * (n - 1))
        return lr.unsqueeze(1) * per.to(lr.dtype).unsqueeze(0)
    raise ValueError(f"noise must be one of {', '.join(NOISES)}, got {noise!r}")


def frozen_noise(
    sigma2: dict[str, torch.Tensor], lr: torch.Tensor, batch_size: int, z: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``ξ_frozen`` per parameter, ``(E, *shape)``: ``η σ₀ z / √|B|``.

    Args:
        sigma2: name -> ``(E, *shape)`` per-entry variances at initialization.
        lr: ``(E,)``. z: name -> ``(*shape)`` standard normal draws, shared by the replicas.
    """
    out = {}
    for k, s2 in sigma2.items():
        scale = lr.view(-1, *[1] * (s2.dim() - 1)) / math.sqrt(batch_size)
        out[k] = scale * s2.sqrt() * z[k].unsqueeze(0)
    return out
