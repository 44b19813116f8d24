"""One update of R replicas of the two-layer net, with hand-written gradients (Eq. 13, 16).

One step function per noise model (``[train] noise``), chosen by the engine with
a plain if/elif:

* ``"sgd"``: :func:`sgd_step` on a minibatch of |B| samples;
* ``"gd"``: :func:`gd_step`, the mean gradient ḡ over G samples;
* ``"gaussian"``: :func:`gaussian_step`, ḡ + ξ with ξ ~ N(0, Σ̂(θ)/|B|), Σ̂ the
  per-sample-gradient covariance on the same G samples;
* ``"frozen"``: :func:`frozen_step`, ḡ + ξ with ξ ~ N(0, diag(σ₀²)/|B|), σ₀² fixed
  at initialization (:func:`thermosgd.twolayer.noise.per_sample_variance`).

SVAG (``[train] svag`` = l; Li, Malladi & Arora 2021) is not a step of its
own: it is one of these steps with other weights, run l times as often.
:func:`svag_coefficients` gives c₁,₂ = (1 ± √(2l−1))/2: c₁ + c₂ = 1 and
c₁² + c₂² = l, so "sgd" with θ ← θ − (η/l)[c₁ ĝ(B₁) + c₂ ĝ(B₂)] (two
independent minibatches, :func:`minibatch_weights` with ``svag``) has mean
update −(η/l)∇L and covariance (η/l)²·l·Σ/|B| = (η²/l)Σ/|B|: over l steps
the same drift and noise as one step of η, up to O(η²/l) corrections. For
"gaussian" and "frozen" the same moments come from η → η/l and |B| → |B|/l
(the noise term times √l); "gd" has no noise term and becomes GD with η/l.

Step functions take tensors and plain scalars only (no config, no engine
state) and update the parameters in place: for large nets the step is bound by
memory traffic, and an in-place rank-1 update is one pass over W. Every step is
a weighted sum of per-sample gradients, θ ← θ − Σ_j w_j ∇ℓ(θ; x_j, y_j), so no
per-sample gradient is ever formed: the weights fold into ∂ℓ/∂f and the W part
is rank-1 updates or one batched matmul.
"""

from __future__ import annotations

import math

import torch

from thermosgd.twolayer.losses import dloss_df


def svag_coefficients(svag: int) -> tuple[float, float]:
    """SVAG's weights (c₁, c₂) = ((1 + √(2l−1))/2, (1 − √(2l−1))/2) of the two minibatches, l = ``svag`` ≥ 1."""
    root = math.sqrt(2 * svag - 1)
    return (1 + root) / 2, (1 - root) / 2


def minibatch_weights(lrs, batch_sizes, seeds: int, dtype: torch.dtype, svag: int = 1) -> torch.Tensor:
    """Per-sample step weights of plain SGD (or its SVAG) for the grid lr × batch size × ``seeds``.

    Args:
        lrs: the L learning rates η. batch_sizes: the K batch sizes |B|.
        seeds: S. dtype: of the weights.
        svag: l ≥ 1; above 1, each step sees two minibatches of max |B| slots.

    Returns:
        (R, B) with R = L·K·S (order lr, batch size, seed) and B = max batch
        size: η/|B| on a replica's first |B| samples, 0 on the rest. With
        ``svag`` = l > 1, (R, 2B): c₁η/(l|B|) on the first |B| samples of the
        first half and c₂η/(l|B|) on those of the second (:func:`svag_coefficients`).
    """
    L, K, B = len(lrs), len(batch_sizes), max(batch_sizes)
    wl = torch.zeros(L, K, seeds, B if svag == 1 else 2 * B, dtype=dtype)
    c1, c2 = svag_coefficients(svag)
    for li, lr in enumerate(lrs):
        for ki, bs in enumerate(batch_sizes):
            if svag == 1:
                wl[li, ki, :, :bs] = lr / bs  # the plain process, bit for bit
            else:
                wl[li, ki, :, :bs] = c1 * lr / (svag * bs)
                wl[li, ki, :, B : B + bs] = c2 * lr / (svag * bs)
    return wl.view(L * K * seeds, -1)


#: On a GPU, batched products whose operands per replica have at most this many entries
#: (I·K + K·J) are one element-wise product and a sum: cuBLAS's batched GEMM gives each
#: of the 65 536 tiny matrices of a large grid a tile of its own, and the small step's
#: kernels are what bound fig3 on a GPU (0.6 ms per step with free draws, on an H200).
TINY_ON_GPU = 512


def _tiny(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether :func:`_bmm` of these operands goes element-wise (on a GPU, small enough)."""
    return a.is_cuda and a.shape[-2] * a.shape[-1] + b.shape[-2] * b.shape[-1] <= TINY_ON_GPU


def _bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.bmm(a, b)`` of (R, I, K) and (R, K, J); for tiny matrices on a GPU the same
    products summed element-wise (:data:`TINY_ON_GPU`). On the CPU always ``bmm``: its bits are
    the reference's."""
    if _tiny(a, b):
        return (a.unsqueeze(-1) * b.unsqueeze(1)).sum(-2)
    return torch.bmm(a, b)


def sgd_step(
    W: torch.Tensor,
    b: torch.Tensor,
    V: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    wl: torch.Tensor,
    loss: str,
    bias: bool = True,
    row_norms2: torch.Tensor | None = None,
) -> None:
    """One step θ ← θ − Σ_j wl_j ∇ℓ(θ; x_j, y_j) for R replicas, in place.

    With ``wl`` = η/|B| on the first |B| samples this is plain SGD; the other
    noise models below are this step with other per-sample weights.

    Args:
        W: (R, N, M); b: (R, N); V: (R, N) — updated in place.
        x: (R, B, M) inputs; y: (R, B) labels.
        wl: (R, B) per-sample step weights (0 everywhere freezes a replica).
        loss: "bce" or "mse".
        bias: update b (False: b stays fixed).
        row_norms2: optional (R, N) running ‖W_i‖², updated in place exactly
            (from the identity below) so that recording ‖W_i‖ at every step
            needs no extra pass over W.

    The gradient is written out by hand: with e = ∂ℓ/∂f and s = σ'(z),
    ∂ℓ/∂V = e σ(z), ∂ℓ/∂b = e s ⊙ V =: δ, ∂ℓ/∂W = δ xᵀ; folding the weights
    into e makes the W update a sum of in-place rank-1 updates (one pass over
    W each), or one batched matmul for larger B.
    """
    z = _bmm(x, W.mT).add_(b.unsqueeze(1)) if _tiny(x, W.mT) else torch.baddbmm(b.unsqueeze(1), x, W.mT)  # (R, B, N)
    s = z > 0
    wx = z - b.unsqueeze(1) if row_norms2 is not None else None  # W x before the update
    a = z.clamp_min_(0.0)
    f = _bmm(a, V.unsqueeze(-1)).squeeze(-1)  # (R, B)
    el = dloss_df(f, y, loss).mul_(wl)
    gV = _bmm(el.unsqueeze(1), a).squeeze(1)  # (R, N)
    delta = (el.unsqueeze(-1) * V.unsqueeze(1)).mul_(s)  # (R, B, N)
    if row_norms2 is not None and wx is not None:
        # ‖W_i − Σ_j δ_ji x_j‖² = ‖W_i‖² − 2 Σ_j δ_ji (W x_j)_i + Σ_jl δ_ji δ_li (x_j · x_l)
        row_norms2.sub_(2.0 * (delta * wx).sum(1))
        row_norms2.add_((delta * _bmm(_bmm(x, x.mT), delta)).sum(1))
    B = x.shape[1]
    if B <= 4:
        # Rank-1 updates as one elementwise pass over W each: for small matrices
        # this is several times faster than batched GEMM (which is what bmm does).
        for j in range(B):
            W.addcmul_(delta[:, j].unsqueeze(-1), x[:, j].unsqueeze(1), value=-1.0)
    else:
        W.baddbmm_(delta.mT, x, alpha=-1.0)
    if bias:
        b.sub_(delta.sum(1))
    V.sub_(gV)


def gd_step(
    W: torch.Tensor,
    b: torch.Tensor,
    V: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    lr: torch.Tensor,
    loss: str,
    bias: bool = True,
) -> None:
    """Noise model "gd": θ ← θ − η ḡ, ḡ the mean gradient over the G samples of x, in place.

    Args:
        W: (R, N, M); b: (R, N); V: (R, N) — updated in place.
        x: (R, G, M); y: (R, G).
        lr: (R,) step sizes η (0 freezes a replica).
        loss: "bce" or "mse". bias: update b.
    """
    sgd_step(W, b, V, x, y, gd_weights(lr, x.shape[1]), loss, bias)


def gd_weights(lr: torch.Tensor, G: int) -> torch.Tensor:
    """Per-sample weights of the "gd" step (and of "frozen"'s drift): (R, G) = η/G, from lr (R,)."""
    return (lr / G).unsqueeze(-1).expand(-1, G)


def gaussian_weights(lr: torch.Tensor, batch_size: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Per-sample weights of the "gaussian" step: (R, G) from lr (R,), batch_size (R,), z (R, G).

    η(ḡ + ξ) with ξ = (|B|(G−1))^(−1/2) Σ_i z_i (g_i − ḡ) equals Σ_i w_i g_i with
    w_i = η (1/G + (z_i − z̄)/√(|B|(G−1))), since Σ_i z_i ḡ = Σ_i z̄ g_i.
    """
    G = z.shape[-1]
    c = (batch_size * (G - 1)).rsqrt().unsqueeze(-1)
    return lr.unsqueeze(-1) * (1.0 / G + c * (z - z.mean(-1, keepdim=True)))


def gaussian_step(
    W: torch.Tensor,
    b: torch.Tensor,
    V: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    lr: torch.Tensor,
    batch_size: torch.Tensor,
    z: torch.Tensor,
    loss: str,
    bias: bool = True,
) -> None:
    """Noise model "gaussian": θ ← θ − η(ḡ + ξ), ξ ~ N(0, Σ̂(θ)/|B|), in place.

    Σ̂ is the unbiased covariance of the per-sample gradients g_i on the G
    samples of x; ξ = (|B|(G−1))^(−1/2) Σ_i z_i (g_i − ḡ) has exactly that
    covariance given the samples, so SGD's first two moments (and their
    dependence on θ) are kept, with Gaussian noise. Σ̂ is never formed.

    Args:
        W: (R, N, M); b: (R, N); V: (R, N) — updated in place.
        x: (R, G, M); y: (R, G).
        lr: (R,) step sizes η (0 freezes a replica). batch_size: (R,) |B|.
        z: (R, G) standard normal draws.
        loss: "bce" or "mse". bias: update b.
    """
    sgd_step(W, b, V, x, y, gaussian_weights(lr, batch_size, z), loss, bias)


def frozen_step(
    W: torch.Tensor,
    b: torch.Tensor,
    V: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    lr: torch.Tensor,
    scale: torch.Tensor,
    z: torch.Tensor,
    loss: str,
    bias: bool = True,
) -> None:
    """Noise model "frozen": θ ← θ − η(ḡ + ξ), ξ = scale ⊙ z ~ N(0, diag(scale²)), in place.

    Args:
        W: (R, N, M); b: (R, N); V: (R, N) — updated in place.
        x: (R, G, M); y: (R, G).
        lr: (R,) step sizes η (0 freezes a replica).
        scale: (R, P) noise standard deviation per parameter entry, √(σ₀²/|B|),
            entries ordered (W row-major, b, V), P = N·M + 2N.
        z: (R, P) standard normal draws.
        loss: "bce" or "mse". bias: update b.
    """
    gd_step(W, b, V, x, y, lr, loss, bias)
    R, N, M = W.shape
    xi = frozen_noise(lr, scale, z)
    W.sub_(xi[:, : N * M].view(R, N, M))
    if bias:
        b.sub_(xi[:, N * M : N * M + N])
    V.sub_(xi[:, N * M + N :])


def frozen_noise(lr: torch.Tensor, scale: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The noise part η ξ of the "frozen" step: (R, P) = lr (R,) × scale (R, P) ⊙ z (R, P), entries (W, b, V)."""
    return frozen_scale(lr, scale).mul_(z)


def frozen_scale(lr: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """η × scale, (R, P): the factor of the normal draws in :func:`frozen_noise` (the compiled
    kernel takes it as it is, and multiplies in the draws itself, rounding as there)."""
    return lr.unsqueeze(-1) * scale
