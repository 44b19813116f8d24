"""Random numbers and noise statistics of the noise models "gaussian" and "frozen".

The noise models themselves are step functions in :mod:`thermosgd.twolayer.steps`;
this module gives them their standard normal draws, from seeded per-replica
streams, and the per-sample-gradient variance σ₀² the "frozen" model fixes at
initialization.
"""

from __future__ import annotations

import torch

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

    Computed in float64 from first and second moments without forming the
    per-sample gradients: for W, Σ_i (δ_in x_im)² = ((δ²)ᵀ x²)_nm is one batched
    matmul.

    Args:
        W: (R, N, M); b: (R, N); V: (R, N) — the parameters.
        x: (R, G, M) inputs; y: (R, G) labels (G ≥ 2).
        loss: "bce" or "mse". bias: b is trained (otherwise its variance is 0).

    Returns:
        (R, P) variances, entries ordered (W row-major, b, V), P = N·M + 2N, in W's dtype.
    """
    dt = W.dtype
    W, b, V, x, y = (t.to(torch.float64) for t in (W, b, V, x, y))
    G = x.shape[1]
    z = torch.baddbmm(b.unsqueeze(1), x, W.mT)  # (R, G, N)
    a = z.clamp_min(0.0)
    e = dloss_df(torch.bmm(a, V.unsqueeze(-1)).squeeze(-1), y, loss)  # (R, G)
    gV = e.unsqueeze(-1) * a  # (R, G, N): per-sample ∂ℓ/∂V
    delta = e.unsqueeze(-1) * (z > 0).to(z.dtype) * V.unsqueeze(1)  # per-sample ∂ℓ/∂b

    def var(total, total_sq):
        return (total_sq - total * total / G) / (G - 1)

    var_W = var(torch.bmm(delta.mT, x), torch.bmm((delta * delta).mT, x * x))  # (R, N, M)
    var_b = var(delta.sum(1), (delta * delta).sum(1)) if bias else torch.zeros_like(b)
    var_V = var(gV.sum(1), (gV * gV).sum(1))
    out = torch.cat([var_W.flatten(1), var_b, var_V], 1).clamp_min_(0.0)  # rounding can go below 0
    return out.to(dt)
