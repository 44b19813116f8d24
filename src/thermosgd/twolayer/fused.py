"""A fused CPU step for noise = "sgd": several SGD steps of every replica in one compiled loop.

Opt-in (``[train] fused = true``); the reference is
:func:`thermosgd.twolayer.steps.sgd_step`, which does the same arithmetic as
about fifteen batched torch ops per step. Here one numba-compiled loop runs,
per replica, every step between two recorded steps (forward, hand-written
backward of Eq. 13/16, in-place update), so the per-step cost is the
arithmetic (about 4·N·M·|B| flops) instead of torch's dispatch overhead.
Replicas run in blocks of :data:`LANES`, innermost, so the loops over them are
SIMD-vectorized (one replica per lane) and a block's weights stay in cache for
all steps of a call.

It consumes exactly the samples the reference consumes (the same CPU-drawn
chunks, in the same order), so per-replica random streams are unchanged. It
is equal to the reference to floating-point tolerance, not bit-identical: the
sums run in another order, and ‖W_i‖ is recomputed from W at recorded steps
instead of being tracked incrementally.

Needs numba (the ``fast`` extra: ``pip install thermosgd[fast]``).
"""

from __future__ import annotations

import numpy as np
import torch

from thermosgd.errors import UsageError



def available() -> bool:
    """Whether numba can be imported."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def require() -> None:
    """UsageError (one line) when numba is missing."""
    if not available():
        raise UsageError('[train] fused = true needs numba: pip install "thermosgd[fast]" (or pip install numba)')


_KERNEL = None
#: Replicas per block: the kernel's innermost loops run over them (SIMD lanes).
LANES = 16


def _kernel():
    """The lane-parallel compiled loop: replicas in blocks of LANES, innermost (vectorized)."""
    global _KERNEL
    if _KERNEL is None:
        import numba

        @numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
        def steps(W, b, V, xs, ys, wl, stream, mse, bias, X, Y, Z, D, e, f):  # pragma: no cover - compiled
            """n SGD steps, in place. W (NB, N, M, Q), b, V (NB, N, Q), wl (NB, B, Q),
            stream (NB, Q); xs (streams, n, B, M), ys (streams, n, B); scratch
            X (B, M, Q), Y, e (B, Q), Z, D (B, N, Q), f (Q,)."""
            NB, N, M, Q = W.shape
            _, n, B, _ = xs.shape
            for k in range(NB):
                for c in range(n):
                    for j in range(B):  # gather this step's samples into lanes
                        for q in range(Q):
                            s = stream[k, q]
                            Y[j, q] = ys[s, c, j]
                            for m in range(M):
                                X[j, m, q] = xs[s, c, j, m]
                    for j in range(B):  # forward at the pre-step parameters
                        for q in range(Q):
                            f[q] = 0
                        for i in range(N):
                            for q in range(Q):
                                Z[j, i, q] = b[k, i, q]
                            for m in range(M):
                                for q in range(Q):
                                    Z[j, i, q] += W[k, i, m, q] * X[j, m, q]
                            for q in range(Q):
                                f[q] += max(Z[j, i, q], 0) * V[k, i, q]
                        for q in range(Q):
                            g = f[q] - Y[j, q] if mse else 1 / (1 + np.exp(-f[q])) - Y[j, q]
                            e[j, q] = g * wl[k, j, q]
                    for i in range(N):  # backward at the pre-step V, then V's update
                        for j in range(B):
                            for q in range(Q):
                                z = Z[j, i, q]
                                D[j, i, q] = e[j, q] * V[k, i, q] if z > 0 else 0
                        for j in range(B):
                            for q in range(Q):
                                V[k, i, q] -= e[j, q] * max(Z[j, i, q], 0)
                    for i in range(N):  # W_i -= Σ_j δ_ji x_j, b_i -= Σ_j δ_ji
                        for j in range(B):
                            for m in range(M):
                                for q in range(Q):
                                    W[k, i, m, q] -= D[j, i, q] * X[j, m, q]
                            if bias:
                                for q in range(Q):
                                    b[k, i, q] -= D[j, i, q]

        _KERNEL = steps
    return _KERNEL


def sgd_steps(W: torch.Tensor, b: torch.Tensor, V: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor,
              wl: torch.Tensor, stream: np.ndarray, loss: str, bias: bool) -> None:
    """Advance every replica by ``xs.shape[0]`` SGD steps, in place (CPU tensors only).

    Args:
        W: (R, N, M); b: (R, N); V: (R, N) — contiguous, updated in place.
        xs: (n, streams, B, M) inputs of n steps; ys: (n, streams, B) labels.
        wl: (R, B) per-sample step weights (η/|B| on the first |B| samples, else 0).
        stream: (R,) int64, the row of ``xs`` each replica reads (its data stream).
        loss: "bce" or "mse". bias: update b.
    """
    R, N, M = W.shape
    B = xs.shape[2]
    dt = W.numpy().dtype
    Q = LANES
    NB = -(-R // Q)
    pad = NB * Q - R

    def soa(t, *shape):  # (R, *shape) -> (NB, *shape, Q), padded replicas zero
        t = torch.cat([t, t.new_zeros(pad, *shape)]) if pad else t
        return t.reshape(NB, Q, *shape).movedim(1, -1).contiguous()

    Ws, bs, Vs, wls = soa(W, N, M), soa(b, N), soa(V, N), soa(wl, B)  # padded lanes: wl = 0, no-ops
    st = np.concatenate([stream, np.zeros(pad, stream.dtype)]).reshape(NB, Q)
    _kernel()(Ws.numpy(), bs.numpy(), Vs.numpy(), xs.transpose(0, 1).contiguous().numpy(),
                  ys.transpose(0, 1).contiguous().numpy(), wls.numpy(), st, loss == "mse", bias,
                  np.empty((B, M, Q), dt), np.empty((B, Q), dt), np.empty((B, N, Q), dt),
                  np.empty((B, N, Q), dt), np.empty((B, Q), dt), np.empty(Q, dt))
    for t, u in ((W, Ws), (b, bs), (V, Vs)):
        t.copy_(u.movedim(-1, 1).reshape(NB * Q, *t.shape[1:])[:R])
