"""Random numbers and noise statistics of the noise models "gaussian" and "frozen".

The noise models themselves are step functions in :mod:`thermosgd.twolayer.steps`;
this module gives them their standard normal draws, from seeded per-replica
streams, and the per-sample-gradient variance σ₀² the "frozen" model fixes at
initialization.
"""

from __future__ import annotations

import torch

from thermosgd.instruments import _moments as moments
from thermosgd.twolayer.losses import dloss_df


class NormalStreams:
    """Standard normal draws of ``size`` numbers per step, for each of several streams.

    Each stream has its own generator (seeded from the replica's coordinates by the
    caller), so a replica's draws never depend on which other replicas run with
    it. Draws come in whole chunks of ``chunk`` steps, like the data streams: a
    run of T steps sees the same first T draws as a longer run.

    Args:
        gens: one ``torch.Generator`` per stream.
        size: numbers per step (G for "gaussian", P for "frozen").
        chunk: steps per draw.
        dtype: dtype of the draws.
    """

    def __init__(self, gens, size: int, chunk: int, dtype: torch.dtype):
        self.gens, self.size, self.chunk, self.dtype = list(gens), size, chunk, dtype

    def next(self, n: int) -> torch.Tensor:
        """The next n ≤ chunk steps' draws: (n, streams, size)."""
        draws = [torch.randn(self.chunk, self.size, generator=g, dtype=self.dtype)[:n] for g in self.gens]
        return torch.stack(draws, 1)


def per_sample_variance(
    W: torch.Tensor, b: torch.Tensor, V: torch.Tensor, x: torch.Tensor, y: torch.Tensor, loss: str, bias: bool = True
) -> torch.Tensor:
    """Unbiased variance over G samples of each parameter entry's per-sample gradient.

    Per entry from :mod:`~thermosgd.instruments._moments`, in float64, without forming the
    per-sample gradients: W's are the errors ``δ = e V ⊙ 1[z > 0]`` times the inputs x,
    b's the errors δ, V's the error ``e = ∂ℓ/∂f`` times ``a = relu(z)``.

    Args:
        W: (R, N, M); b: (R, N); V: (R, N) — the parameters.
        x: (R, G, M) inputs; y: (R, G) labels (G ≥ 2).
        loss: "bce" or "mse". bias: b is trained (otherwise its variance is 0).

    Returns:
        (R, P) variances, entries ordered (W row-major, b, V), P = N·M + 2N, in W's dtype.
    """
    # One replica at a time: batched matmuls may block differently for different replica counts,
    # and a replica's σ₀ must be the same bits alone or in any grid (a frozen run's layout promise).
    one = [W[r : r + 1] for r in range(W.shape[0])]
    rows = [
        _replica_variance(w, b[r : r + 1], V[r : r + 1], x[r : r + 1], y[r : r + 1], loss, bias)
        for r, w in enumerate(one)
    ]
    return torch.cat(rows, 0) if rows else torch.zeros(0, W.shape[1] * W.shape[2] + 2 * W.shape[1], dtype=W.dtype)


def _replica_variance(
    W: torch.Tensor, b: torch.Tensor, V: torch.Tensor, x: torch.Tensor, y: torch.Tensor, loss: str, bias: bool
) -> torch.Tensor:
    dt = W.dtype
    W, b, V, x, y = (t.to(torch.float64) for t in (W, b, V, x, y))
    G = x.shape[1]
    z = torch.baddbmm(b.unsqueeze(1), x, W.mT)  # (R, G, N)
    a = z.clamp_min(0.0)
    e = dloss_df(torch.bmm(a, V.unsqueeze(-1)).squeeze(-1), y, loss)  # (R, G)
    delta = e.unsqueeze(-1) * (z > 0).to(z.dtype) * V.unsqueeze(1)  # per-sample ∂ℓ/∂b

    def var(m2: torch.Tensor) -> torch.Tensor:
        return moments.normalize(m2, G).flatten(1)

    var_W = var(moments.linear_weight_deviations(x, delta, per_entry=True))  # (R, N·M)
    var_b = var(moments.bias_deviations(delta, per_entry=True)) if bias else torch.zeros_like(b)
    var_V = var(moments.linear_weight_deviations(a, e.unsqueeze(-1), per_entry=True))  # (R, 1·N)
    return torch.cat([var_W, var_b, var_V], 1).clamp_min_(0.0).to(dt)  # rounding can go below 0
