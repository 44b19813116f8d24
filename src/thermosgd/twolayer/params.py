"""Parameters of an ensemble of two-layer nets f(x) = V σ(W x + b), and their initialization.

Replicas are ordered (lr, batch size, seed), seed fastest: replica
``r = (li·K + ki)·S + si`` for L learning rates, K batch sizes and S seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from thermosgd.config import SweepConfig
from thermosgd.twolayer.data import INIT, generator


@dataclass
class Params:
    """Parameters of R replicas: W (R, N, M), b (R, N), V (R, N)."""

    W: torch.Tensor
    b: torch.Tensor
    V: torch.Tensor


def init_params(cfg: SweepConfig, gen: torch.Generator, dtype: torch.dtype):
    """One replica's initial parameters, as documented in :class:`~thermosgd.config.ModelConfig`.

    Returns:
        (W (N, M), b (N,), V (N,)).
    """
    M, N, s = cfg.model.inputs, cfg.model.hidden, cfg.model.init_scale
    if cfg.model.init == "torch":
        # nn.Linear: kaiming_uniform(a=√5) gives U(-1/√fan_in, 1/√fan_in), bias alike.
        W = (torch.rand(N, M, generator=gen, dtype=dtype) * 2 - 1) / math.sqrt(M)
        b = (torch.rand(N, generator=gen, dtype=dtype) * 2 - 1) / math.sqrt(M)
        V = (torch.rand(N, generator=gen, dtype=dtype) * 2 - 1) / math.sqrt(N)
    else:
        W = torch.randn(N, M, generator=gen, dtype=dtype) / math.sqrt(M)
        b = torch.zeros(N, dtype=dtype)
        V = torch.randn(N, generator=gen, dtype=dtype) / math.sqrt(N)
    if not cfg.model.bias:
        b = torch.zeros(N, dtype=dtype)
    return W * s, b * s, V * s


def init_ensemble(cfg: SweepConfig, seeds, dtype: torch.dtype) -> Params:
    """Initial parameters of the grid ``cfg.train.lr × cfg.train.batch_size × seeds``.

    With ``share_init`` the replicas of one seed share one draw; otherwise each
    (seed, lr index, batch index) draws its own. Either way a replica's numbers
    depend only on its coordinates, never on the other seeds trained with it.

    Returns:
        :class:`Params` with R = L·K·S replicas (contiguous tensors).
    """
    t = cfg.train
    L, K, S = len(t.lr), len(t.batch_size), len(seeds)
    N, M = cfg.model.hidden, cfg.model.inputs
    P = N * M + 2 * N
    if t.share_init:  # one draw per seed, broadcast over the grid in one copy
        one = torch.empty(S, P, dtype=dtype)
        for si, seed in enumerate(seeds):
            _put(one[si], *init_params(cfg, generator(t.seed, seed, INIT), dtype))
        flat = one.expand(L, K, S, P)
    else:
        flat = torch.empty(L, K, S, P, dtype=dtype)
        for si, seed in enumerate(seeds):
            for li in range(L):
                for ki in range(K):
                    _put(flat[li, ki, si], *init_params(cfg, generator(t.seed, seed, INIT, li, ki), dtype))
    R = L * K * S
    return Params(
        W=flat[..., : N * M].reshape(R, N, M).contiguous(),
        b=flat[..., N * M : N * M + N].reshape(R, N).contiguous(),
        V=flat[..., N * M + N :].reshape(R, N).contiguous(),
    )


def _put(row: torch.Tensor, W: torch.Tensor, b: torch.Tensor, V: torch.Tensor) -> None:
    """One replica's (W, b, V) into its flat row (W row-major, then b, then V)."""
    n = W.numel()
    row[:n].copy_(W.reshape(-1))
    row[n : n + len(b)].copy_(b)
    row[n + len(b) :].copy_(V)
