"""The compiled loops of :mod:`thermosgd.twolayer.fused`, as module-level numba functions.

Imported only by :mod:`~thermosgd.twolayer.fused` (which sets numba's on-disk
cache outside the source tree first), so ``import thermosgd`` never needs numba.
Each kernel works on a range of replica blocks (lanes) or replicas (rows) and is
split over threads by the caller; replicas never mix.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from thermosgd.twolayer import philox_constants as PC
from thermosgd.twolayer.lanes import LANES

Q = LANES  # a compile-time constant: the lane loops have a fixed trip count


#: fastmath without ``reassoc`` for the G-sample kernels: reassociated reductions compiled to
#: different bits in the code numba runs after compiling and in its cached object code (1e-17 on an
#: AVX-512 machine), so a fresh clone's first run differed from its reruns. Their sums over samples
#: run in the BLAS instead (:func:`sample_steps`).
_NO_REASSOC = {"nnan", "ninf", "nsz", "arcp", "afn", "contract"}


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def steps(W, b, V, xs, ys, wl, stream, c0, n, mse, bias, k0, k1):  # pragma: no cover - compiled
    """Steps c0..c0+n of the chunk for blocks k0..k1, in place.

    W (NB, N, M, Q), b, V (NB, N, Q), wl (NB, B, Q), stream (NB, Q);
    xs (streams, chunk, B, M), ys (streams, chunk, B).
    """
    _, N, M, Q = W.shape
    B = xs.shape[2]
    dt = W.dtype
    X = np.empty((B, M, Q), dt)
    Y = np.empty((B, Q), dt)
    Z = np.empty((B, N, Q), dt)
    D = np.empty((B, N, Q), dt)
    e = np.empty((B, Q), dt)
    f = np.empty(Q, dt)
    zero, one = np.zeros(1, dt)[0], np.ones(1, dt)[0]  # typed constants: no float64 promotion
    for k in range(k0, k1):
        for c in range(c0, c0 + n):
            for j in range(B):  # gather this step's samples into lanes
                for q in range(Q):
                    s = stream[k, q]
                    Y[j, q] = ys[s, c, j]
                    for m in range(M):
                        X[j, m, q] = xs[s, c, j, m]
            for j in range(B):  # forward at the pre-step parameters
                for q in range(Q):
                    f[q] = zero
                for i in range(N):
                    for q in range(Q):
                        Z[j, i, q] = b[k, i, q]
                    for m in range(M):
                        for q in range(Q):
                            Z[j, i, q] += W[k, i, m, q] * X[j, m, q]
                    for q in range(Q):
                        f[q] += max(Z[j, i, q], zero) * V[k, i, q]
                for q in range(Q):
                    g = f[q] - Y[j, q] if mse else one / (one + np.exp(-f[q])) - Y[j, q]
                    e[j, q] = g * wl[k, j, q]
            for i in range(N):  # backward at the pre-step V, then V's update
                for j in range(B):
                    for q in range(Q):
                        D[j, i, q] = (
                            e[j, q] * V[k, i, q] * (one if Z[j, i, q] > zero else zero)
                        )  # NaN·0 stays NaN, as torch
                for j in range(B):
                    for q in range(Q):
                        V[k, i, q] -= e[j, q] * max(Z[j, i, q], zero)
            for i in range(N):  # W_i -= Σ_j δ_ji x_j, b_i -= Σ_j δ_ji
                for j in range(B):
                    for m in range(M):
                        for q in range(Q):
                            W[k, i, m, q] -= D[j, i, q] * X[j, m, q]
                    if bias:
                        for q in range(Q):
                            b[k, i, q] -= D[j, i, q]


@numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
def metrics(W, b, V, out, ratio, k0, k1):  # pragma: no cover - compiled
    """Per lane, into out (4, NB, Q): ‖V‖, ‖W‖, mean b, Σ V + Σ b + Σ W; into ratio
    (NB, N, Q): b_i/‖W_i‖ (Φ of it, for the exact activation rate, is taken by torch)."""
    _, N, M, _ = W.shape
    r2 = np.empty(Q, W.dtype)
    for k in range(k0, k1):
        for c in range(4):
            for q in range(Q):
                out[c, k, q] = 0
        for i in range(N):
            for q in range(Q):
                r2[q] = 0
            for m in range(M):
                for q in range(Q):
                    w = W[k, i, m, q]
                    r2[q] += w * w
                    out[3, k, q] += w
            for q in range(Q):
                bi, vi = b[k, i, q], V[k, i, q]
                out[0, k, q] += vi * vi
                out[1, k, q] += r2[q]
                out[2, k, q] += bi
                out[3, k, q] += bi + vi
                ratio[k, i, q] = bi / math.sqrt(r2[q])
        for q in range(Q):
            out[0, k, q] = math.sqrt(out[0, k, q])
            out[1, k, q] = math.sqrt(out[1, k, q])
            out[2, k, q] /= N


@numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
def probe(W, b, V, pxl, pyl, g0, mse, grads, out, k0, k1):  # pragma: no cover - compiled
    """Probe-set instruments per lane, into out (6, NB, Q): activation rate, loss, error,
    and the per-sample gradient variances (summed over entries, unnormalized) of V, W, b.

    pxl (NBg, P, M, Q), pyl (NBg, P, Q): each lane's probe set in the lanes' layout, for
    blocks g0 .. g0 + NBg (k0 .. k1 among them). ``grads`` False: the activation rate only.
    Sums over samples run in float64; the loops over lanes are innermost (vectorized), one
    array per accumulator.
    """
    _, N, M, Q = W.shape
    P = pxl.shape[1]
    dt = W.dtype  # per-sample work and per-entry sums in the parameters' precision, as the reference
    Z = np.empty((N, Q), dt)
    grad_sums = np.empty((2 * N + N * M, Q), dt)  # Σ_p of the per-sample gradients: V, b, W (row-major)
    F = np.empty(Q, dt)  # f, then ∂ℓ/∂f, of the current sample
    scratch = np.empty((4, Q), dt)
    zero = np.zeros(1, dt)[0]  # a typed constant: no float64 promotion
    # Σ_p in float64 of: active units, loss, errors, e²‖a‖², ‖δ‖², ‖δ‖²‖x‖²
    sums = np.empty((6, Q))
    for k in range(k0, k1):
        sums[:] = 0
        grad_sums[:] = 0
        for p in range(P):
            X = pxl[k - g0, p]  # (M, Q)
            for q in range(Q):
                F[q] = zero
            for i in range(N):
                for q in range(Q):
                    Z[i, q] = b[k, i, q]
                for m in range(M):
                    for q in range(Q):
                        Z[i, q] += W[k, i, m, q] * X[m, q]
                for q in range(Q):
                    z = Z[i, q]
                    sums[0, q] += 1.0 if z > 0 else 0.0
                    F[q] += max(z, zero) * V[k, i, q]
            if grads:
                _lane_loss(F, pyl[k - g0, p], mse, sums)
                _lane_grads(V, k, X, Z, F, grad_sums, sums, scratch)
        _lane_probe_out(grad_sums, sums, N, M, P, out, k)


@numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
def _lane_loss(F, y_lanes, mse, sums):  # pragma: no cover - compiled
    """Loss and error of one probe sample per lane (labels y_lanes (Q,)) into sums[1], sums[2];
    F (Q,): f in, ∂ℓ/∂f out."""
    for q in range(Q):
        f, y = F[q], y_lanes[q]
        if mse:
            sums[1, q] += 0.5 * (f - y) ** 2
            F[q] = f - y
        else:  # softplus(f) − y f, overflow-free (log(1 + t) in float64 rather than
            # log1p(t): libm's log1p took 1.5–1.9× log's time here; error < 2e-16 absolute),
            # and σ(f) from the same t = e^(−|f|): one exp per sample and lane
            t = math.exp(-abs(f))
            sums[1, q] += max(f, 0.0) + math.log(1.0 + t) - y * f
            sig = 1 / (1 + t)
            F[q] = (sig if f >= 0 else t * sig) - y
        sums[2, q] += (1.0 if f > 0 else 0.0) != y


@numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
def _lane_grads(V, k, X, Z, F, grad_sums, sums, scratch):  # pragma: no cover - compiled
    """One probe sample's per-sample gradients, lanes innermost: added to grad_sums (V, b, W rows)
    and, as e²‖a‖², ‖δ‖², ‖δ‖²‖x‖², to sums[3:6] (into float64 once per sample). scratch: (4, Q)."""
    N, Q = Z.shape
    M = X.shape[0]
    zero = np.zeros(1, Z.dtype)[0]
    xx, d2, a2, D = scratch[0], scratch[1], scratch[2], scratch[3]
    xx[:] = zero
    d2[:] = zero
    a2[:] = zero
    for m in range(M):
        for q in range(Q):
            xx[q] += X[m, q] * X[m, q]
    for i in range(N):
        for q in range(Q):
            e, z = F[q], Z[i, q]
            a = max(z, zero)
            d = e * V[k, i, q] if z > zero else zero
            D[q] = d
            grad_sums[i, q] += e * a
            a2[q] += a * a
            grad_sums[N + i, q] += d
            d2[q] += d * d
        for m in range(M):
            row = 2 * N + i * M + m
            for q in range(Q):
                grad_sums[row, q] += D[q] * X[m, q]
    for q in range(Q):
        sums[3, q] += F[q] * F[q] * a2[q]
        sums[4, q] += d2[q]
        sums[5, q] += d2[q] * xx[q]


@numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
def _lane_probe_out(grad_sums, sums, N, M, P, out, k):  # pragma: no cover - compiled
    """Block k's means over the P probe samples into out (6, NB, Q) (see :func:`probe`)."""
    corr = P / (P - 1)
    for q in range(Q):
        mV, mb, mW = 0.0, 0.0, 0.0
        for i in range(N):
            mV += (grad_sums[i, q] / P) ** 2
            mb += (grad_sums[N + i, q] / P) ** 2
            for m in range(M):
                mW += (grad_sums[2 * N + i * M + m, q] / P) ** 2
        out[0, k, q] = sums[0, q] / (P * N)
        out[1, k, q] = sums[1, q] / P
        out[2, k, q] = sums[2, q] / P
        out[3, k, q] = (sums[3, q] / P - mV) * corr
        out[4, k, q] = (sums[5, q] / P - mW) * corr
        out[5, k, q] = (sums[4, q] / P - mb) * corr


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def row_steps(W, b, V, xs, ys, wl, stream, c0, n, mse, bias, r0, r1):  # pragma: no cover - compiled
    """Steps c0..c0+n of the chunk for replicas r0..r1, in place, one replica at a time.

    W (R, N, M), b, V (R, N), wl (R, B), stream (R,); xs (streams, chunk, B, M),
    ys (streams, chunk, B). The loops over M run along W's rows (vectorized),
    and the rows of inactive units (δ_i = 0) are not touched.
    """
    _, N, M = W.shape
    B = xs.shape[2]
    dt = W.dtype
    Z = np.empty((B, N), dt)
    D = np.empty((B, N), dt)
    e = np.empty(B, dt)
    zero, one = np.zeros(1, dt)[0], np.ones(1, dt)[0]
    for r in range(r0, r1):
        s = stream[r]
        for c in range(c0, c0 + n):
            for j in range(B):  # forward at the pre-step parameters
                i = 0
                while i + 4 <= N:  # four rows at once: four independent sums share each x_m
                    a0, a1, a2, a3 = b[r, i], b[r, i + 1], b[r, i + 2], b[r, i + 3]
                    for m in range(M):
                        xm = xs[s, c, j, m]
                        a0 += W[r, i, m] * xm
                        a1 += W[r, i + 1, m] * xm
                        a2 += W[r, i + 2, m] * xm
                        a3 += W[r, i + 3, m] * xm
                    Z[j, i], Z[j, i + 1], Z[j, i + 2], Z[j, i + 3] = a0, a1, a2, a3
                    i += 4
                while i < N:
                    acc = b[r, i]
                    for m in range(M):
                        acc += W[r, i, m] * xs[s, c, j, m]
                    Z[j, i] = acc
                    i += 1
                f = zero
                for i in range(N):
                    f += max(Z[j, i], zero) * V[r, i]
                y = ys[s, c, j]
                g = f - y if mse else one / (one + np.exp(-f)) - y
                e[j] = g * wl[r, j]
            for i in range(N):  # backward at the pre-step V, then V's update
                for j in range(B):
                    D[j, i] = e[j] * V[r, i] * (one if Z[j, i] > zero else zero)  # NaN·0 stays NaN, as torch
                for j in range(B):
                    V[r, i] -= e[j] * max(Z[j, i], zero)
            for i in range(N):  # W_i -= Σ_j δ_ji x_j, b_i -= Σ_j δ_ji
                for j in range(B):
                    d = D[j, i]
                    if d != zero:  # inactive unit: nothing to add (a NaN d is added)
                        for m in range(M):
                            W[r, i, m] -= d * xs[s, c, j, m]
                        if bias:
                            b[r, i] -= d


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def row_steps1(W, b, V, xs, ys, wl, stream, c0, n, mse, bias, r0, r1):  # pragma: no cover - compiled
    """:func:`row_steps` for one sample per step (|B| = 1), one pass over W per step.

    Row i's update of step c and its pre-activation for step c + 1 share one
    loop over W_i (it is loaded once per step, not twice). The update is
    branch-free (δ_i = 0 for inactive units): measured faster than skipping
    rows, whose branch is unpredictable.
    """
    _, N, M = W.shape
    dt = W.dtype
    Z = np.empty(N, dt)
    zero, one = np.zeros(1, dt)[0], np.ones(1, dt)[0]
    end = c0 + n
    for r in range(r0, r1):
        s = stream[r]
        w = wl[r, 0]
        for i in range(N):  # pre-activations of the first step
            acc = zero
            for m in range(M):
                acc += W[r, i, m] * xs[s, c0, 0, m]
            Z[i] = acc + b[r, i]
        for c in range(c0, end):
            f = zero
            for i in range(N):
                f += max(Z[i], zero) * V[r, i]
            y = ys[s, c, 0]
            e = (f - y if mse else one / (one + np.exp(-f)) - y) * w
            nxt = c + 1 < end
            cn = c + 1 if nxt else c
            for i in range(N):
                z = Z[i]
                d = e * V[r, i] * (one if z > zero else zero)  # at the pre-step V; NaN·0 stays NaN
                V[r, i] -= e * max(z, zero)
                if bias:
                    b[r, i] -= d
                if nxt:
                    acc = zero
                    for m in range(M):
                        wm = W[r, i, m] - d * xs[s, c, 0, m]
                        W[r, i, m] = wm
                        acc += wm * xs[s, cn, 0, m]
                    Z[i] = acc + b[r, i]
                else:
                    for m in range(M):
                        W[r, i, m] -= d * xs[s, c, 0, m]


@numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
def row_probe(Z, V, py, seed, xx, mse, grads, delta, out, r0, r1):  # pragma: no cover - compiled
    """The per-sample part of the probe-set instruments for replicas r0..r1, into out (6, R).

    Z (R, P, N): pre-activations on the probe set (torch's batched product);
    py (S, P) labels, seed (R,) a replica's seed index, xx (S, P) ‖x_p‖².
    Writes δ (R, P, N) (for Σ_p δ_p x_pᵀ, a batched product left to torch) and
    out: activation rate, loss, error, then the per-sample gradient second
    moments minus squared means of V and b, and E_p[‖δ_p‖²‖x_p‖²] for W (its
    squared mean is subtracted by the caller). Sums over samples in float64.
    """
    _, P, N = Z.shape
    dt = Z.dtype
    zero = np.zeros(1, dt)[0]
    gV = np.empty(N)
    gb = np.empty(N)
    eb = np.empty(1, dt)
    corr = P / (P - 1)
    for r in range(r0, r1):
        k = seed[r]
        active, lsum, esum, sV, sb, sW = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
        gV[:] = 0
        gb[:] = 0
        for p in range(P):
            f = zero
            for i in range(N):
                z = Z[r, p, i]
                active += 1.0 if z > zero else 0.0
                f += max(z, zero) * V[r, i]
            if not grads:
                continue
            y = py[k, p]
            if mse:
                lsum += 0.5 * (f - y) ** 2
                e = f - y
            else:  # softplus(f) − y f, overflow-free (log(1 + t): as in probe)
                t = math.exp(-abs(f))  # one exp for both, as in _lane_loss
                lsum += max(f, 0.0) + math.log(1.0 + t) - y * f
                sig = 1 / (1 + t)
                e = (sig if f >= 0 else t * sig) - y
            eb[0] = e  # ∂ℓ/∂f in the parameters' precision, as the reference
            e = eb[0]
            esum += (1.0 if f > 0 else 0.0) != y
            a2 = zero
            d2 = zero
            for i in range(N):
                z = Z[r, p, i]
                a = max(z, zero)
                d = e * V[r, i] if z > zero else zero
                delta[r, p, i] = d
                gV[i] += e * a
                gb[i] += d
                a2 += a * a
                d2 += d * d
            sV += e * e * a2
            sb += d2
            sW += d2 * xx[k, p]
        out[0, r] = active / (P * N)
        if grads:
            mV, mb = 0.0, 0.0
            for i in range(N):
                mV += (gV[i] / P) ** 2
                mb += (gb[i] / P) ** 2
            out[1, r] = lsum / P
            out[2, r] = esum / P
            out[3, r] = (sV / P - mV) * corr
            out[4, r] = sW / P
            out[5, r] = (sb / P - mb) * corr


#: Samples per tile of :func:`sample_steps` at most: a tile's pre-activations stay in the L2 cache
#: while the per-sample pass runs over them.
TILE = 256

#: Multiply-adds of one matrix product below which OpenBLAS runs it on the calling thread
#: (65536 · GEMM_MULTITHREAD_THRESHOLD = 4): the kernels are split over threads by the caller,
#: and OpenBLAS's own workers would spin-wait for cores those threads already use.
BLAS_ONE_THREAD = 1 << 18


@numba.njit(cache=True, nogil=True, fastmath=_NO_REASSOC, error_model="numpy")
def sample_steps(  # pragma: no cover - compiled
    W, b, V, xs, ys, wl, order, starts, gstream, c0, n, mse, bias, g0, g1, zs, zscale, T
):
    """Steps c0..c0+n of the chunk for replica groups g0..g1 with many samples per step (the G-sample
    noise models), in place.

    W (R, N, M), b, V (R, N), wl (R, G); xs (streams, chunk, G, M), ys (streams, chunk, G), in W's
    dtype or narrower (float32 draws of a float64 run, widened here tile by tile, so the engine's
    drawing thread skips a pass over the whole chunk). Group g is the replicas
    ``order[starts[g]:starts[g + 1]]``, all reading stream ``gstream[g]`` (the learning rates and
    batch sizes of one seed when streams are shared): their [W | b] are stacked into one matrix,
    so the forward pass over a tile of samples is one matrix product for the whole group, and so
    is every sum over the samples (:func:`_group_tile`). A replica's numbers depend only on its own
    rows of these products, never on its group. The parameters move once per step (every sample
    sees the pre-step parameters). "frozen" adds its noise after each step (:func:`_frozen_noise`):
    zs (chunk, streams, P) normal draws and zscale (R, P) = η·scale; other models pass empty ones.
    T: samples per tile (:func:`sample_tile`, for all groups: a call's range of groups changes no number).

    With e_j = w_j ∂ℓ_j/∂f and s_ij = e_j 1[z_ij > 0], the step's gradient of unit i is
    v_i Σ_j s_ij x_j (W_i), v_i Σ_j s_ij (b_i) and Σ_j e_j relu(z_ij) = W_i·Σ_j s_ij x_j + b_i Σ_j s_ij
    (V_i, since relu(z) = z 1[z > 0] and z_ij = W_i·x_j + b_i). So one product of the s-matrix with
    the tile's [x | 1] gives all three: no sum over samples runs outside the BLAS, whose sums are
    the same bits in a compiling and a cache-loading process (reassociated loops were not: 1e-17 on
    an AVX-512 machine, so a fresh clone's first run differed from its reruns).
    """
    _, N, M = W.shape
    G = xs.shape[2]
    dt = W.dtype
    kmax = 1
    for g in range(g0, g1):
        kmax = max(kmax, starts[g + 1] - starts[g])
    Wg = np.empty((kmax * N, M + 1), dt)  # the members' [W_i | b_i], one row per (member, unit)
    S = np.empty((kmax * N, M + 1), dt)  # Σ_j s_ij (x_j, 1) over the step's tiles
    e = np.empty(T, dt)
    # The tile's [x | 1] transposed, (M + 1, t) for a tile of t, x widened to W's dtype (float64 runs
    # draw float32): contiguous, for the forward product (see _group_tile).
    XT = np.empty((M + 1) * T, dt)
    one = np.ones(1, dt)[0]
    for g in range(g0, g1):
        first, k, s = starts[g], starts[g + 1] - starts[g], gstream[g]
        for c in range(c0, c0 + n):
            for a in range(k):
                r = order[first + a]
                for i in range(N):
                    for m in range(M):
                        Wg[a * N + i, m] = W[r, i, m]
                    Wg[a * N + i, M] = b[r, i]
            S[:] = 0
            for t0 in range(0, G, T):
                t = min(T, G - t0)
                x = xs[s, c, t0 : t0 + t]
                xT = XT[: (M + 1) * t].reshape((M + 1, t))
                for m in range(M):  # exact: widening changes no number, and the copy costs 1/(k·N) of a product
                    for j in range(t):
                        xT[m, j] = x[j, m]
                for j in range(t):
                    xT[M, j] = one
                _group_tile(Wg[: k * N], V, wl, order[first : first + k], xT, ys[s, c], t0, mse, e, S)
            for a in range(k):
                r = order[first + a]
                for i in range(N):
                    row, wb = S[a * N + i], Wg[a * N + i]  # wb: the pre-step [W_i | b_i]
                    vi = V[r, i]
                    gv = wb[M] * row[M]
                    for m in range(M):
                        gv += wb[m] * row[m]
                    for m in range(M):
                        W[r, i, m] -= vi * row[m]
                    if bias:
                        b[r, i] -= vi * row[M]
                    V[r, i] -= gv
                if zs.shape[0]:
                    _frozen_noise(W[r], b[r], V[r], zscale[r], zs[c, s], bias)


def sample_tile(starts: np.ndarray, N: int, M: int, G: int) -> int:
    """Samples per tile of :func:`sample_steps` for the groups of ``starts``: at most :data:`TILE`,
    and small enough that the largest group's products stay under :data:`BLAS_ONE_THREAD`."""
    kmax = max(1, int(np.diff(starts).max(initial=1)))
    return max(16, min(TILE, G, BLAS_ONE_THREAD // (kmax * N * (M + 1))))


@numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
def _frozen_noise(W, b, V, a, z, bias):  # pragma: no cover - compiled
    """θ ← θ − a ⊙ z for one replica, entries (W row-major, b, V) of a, z (P,): the noise of
    :func:`~thermosgd.twolayer.steps.frozen_noise`, rounded as there (product, then difference;
    no fastmath, so no fused multiply-add)."""
    N, M = W.shape
    for i in range(N):
        for m in range(M):
            W[i, m] -= a[i * M + m] * z[i * M + m]
        if bias:
            b[i] -= a[N * M + i] * z[N * M + i]
        V[i] -= a[N * M + N + i] * z[N * M + N + i]


@numba.njit(cache=True, nogil=True, fastmath=_NO_REASSOC, error_model="numpy")
def _group_tile(Wg, V, wl, members, xT, y, t0, mse, e, S):  # pragma: no cover - compiled
    """Samples t0..t0+T of one step of a group, added to ``S`` (k·N, M + 1) (:func:`sample_steps`).

    Wg (k·N, M + 1): the members' [W | b] stacked; xT (M + 1, T) the tile's [x | 1] transposed
    (contiguous: the forward product ran 1.5x faster on it than on a transposed view); y (G,) the
    step's labels. One product gives every member's pre-activations z (k·N, T); a pass per member
    forms e = w ∂ℓ/∂f from f = Σ_i v_i relu(z_i) and overwrites z with s = e 1[z > 0]; a second
    product adds s [x | 1]. The loops run along the samples, element by element: they vectorize
    without reassociating any sum.
    """
    N = V.shape[1]
    T = xT.shape[1]
    Z = np.dot(Wg, xT)
    zero = np.zeros(1, Z.dtype)[0]  # a typed constant: no float64 promotion
    for a in range(members.shape[0]):
        r = members[a]
        for j in range(T):
            e[j] = zero  # f, then w ∂ℓ/∂f
        for i in range(N):  # forward at the pre-step parameters
            vi = V[r, i]
            row = Z[a * N + i]
            for j in range(T):
                e[j] += max(row[j], zero) * vi
        residuals(e[:T], y[t0 : t0 + T], wl[r, t0 : t0 + T], mse)
        for i in range(N):
            row = Z[a * N + i]
            for j in range(T):
                row[j] = e[j] if row[j] > zero else zero
    S[: Z.shape[0]] += np.dot(Z, xT.T)


#: The polynomials of the Philox normals, as names numba's literal_unroll takes.
_LOG_COEFS, _SIN_COEFS, _COS_COEFS = PC.LOG_COEFS, PC.SIN_COEFS, PC.COS_COEFS

#: 1/k! for k = 12, 11, ..., 0: the Taylor polynomial of e^r in :func:`residuals`, highest power first.
_EXP_TAYLOR = tuple(1.0 / math.factorial(k) for k in range(12, -1, -1))


@numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
def residuals(f, y, w, mse):  # pragma: no cover - compiled
    """f ← w (∂ℓ/∂f)(f, y) in place, for f, y, w (T,): mse f − y, bce σ(f) − y.

    σ's exponential is evaluated here (range reduction to r = x − k ln 2, |r| ≤ ln 2 / 2,
    then e^r by its Taylor polynomial to r¹², relative error below 2·10⁻¹⁶) rather than by
    libm's exp, which this LLVM does not vectorize: the loop then runs in SIMD lanes.
    NaN stays NaN; |x| is capped at ~708 (σ is then 0 or 1 to within 10⁻³⁰⁷).
    """
    if mse:
        for j in range(f.shape[0]):
            f[j] = (f[j] - y[j]) * w[j]
        return
    for j in range(f.shape[0]):
        fj = np.float64(f[j])
        x = min(max(-fj, -708.0), 709.0)
        k = np.floor(x * 1.4426950408889634 + 0.5)
        r = (x - k * 0.6931471803691238) - k * 1.9082149292705877e-10  # ln 2 split: k·(high part) is exact
        p = 0.0
        for c in numba.literal_unroll(_EXP_TAYLOR):
            p = p * r + c
        ex = p * np.int64((np.int64(k) + 1023) << 52).view(np.float64)  # p · 2^k
        out = (1.0 / (1.0 + ex) - y[j]) * w[j]
        f[j] = out if fj == fj else fj  # NaN in, NaN out (min/max above would drop it)


_U32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)


@numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
def philox_draw(out, k0, k1, purpose, start, labels):  # pragma: no cover - compiled
    """Draws start..start+len(out) of the Philox stream (key (k0, k1), ``purpose``) into ``out``:
    standard normals, or with ``labels`` the lowest bit of each 32-bit word (a fair 0/1 label).

    The arithmetic of :func:`thermosgd.twolayer.philox._draws_numpy`, operation for operation
    (no fastmath, so nothing is fused or reordered), rounded once to ``out``'s dtype. The whole
    blocks run in one loop that vectorizes (the normals' quadrant logic has no branches: branches
    kept it scalar); a partial block at either end is written lane by lane.
    """
    n = out.shape[0]
    if n == 0:
        return
    ka = np.empty(PC.ROUNDS, np.uint64)  # the key of each round
    kb = np.empty(PC.ROUNDS, np.uint64)
    ka[0], kb[0] = k0, k1
    for r in range(1, PC.ROUNDS):
        ka[r] = (ka[r - 1] + np.uint64(PC.W0)) & _U32
        kb[r] = (kb[r - 1] + np.uint64(PC.W1)) & _U32
    first, last = start // 4, (start + n - 1) // 4
    lo = first if start % 4 == 0 else first + 1  # the whole blocks are lo..hi-1
    hi = last + 1 if (start + n) % 4 == 0 else last
    for b in range(first, last + 1, max(1, last - first)):  # the first and the last block, if partial
        if lo <= b < hi:
            continue
        if labels:
            z0, z1, z2, z3 = _philox_block_bits(np.uint64(b), ka, kb, purpose)
        else:
            z0, z1, z2, z3 = _philox_block(np.uint64(b), ka, kb, purpose)
        for lane in range(4):
            i = 4 * b + lane - start
            if 0 <= i < n:
                out[i] = z0 if lane == 0 else (z1 if lane == 1 else (z2 if lane == 2 else z3))
    if hi > lo:
        _philox_run(out[4 * lo - start : 4 * hi - start], lo, ka, kb, purpose, labels)


@numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
def _philox_run(out, first, ka, kb, purpose, labels):  # pragma: no cover - compiled
    """The normals (or labels) of whole blocks first, first + 1, ... into ``out`` (four per block):
    the loop that vectorizes (LLVM takes the loop-invariant ``labels`` out of it)."""
    for j in range(out.shape[0] // 4):
        if labels:
            z0, z1, z2, z3 = _philox_block_bits(np.uint64(first + j), ka, kb, purpose)
        else:
            z0, z1, z2, z3 = _philox_block(np.uint64(first + j), ka, kb, purpose)
        out[4 * j] = z0
        out[4 * j + 1] = z1
        out[4 * j + 2] = z2
        out[4 * j + 3] = z3


@numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy", inline="always")
def _philox_words(b, ka, kb, purpose):  # pragma: no cover - compiled
    """Philox4x32-10 of the counter (b mod 2³², b div 2³², purpose, 0) with round keys ka, kb."""
    c0, c1, c2, c3 = b & _U32, b >> _S32, purpose, np.uint64(0)
    for r in range(PC.ROUNDS):
        p0, p1 = np.uint64(PC.M0) * c0, np.uint64(PC.M1) * c2
        c0, c1, c2, c3 = (p1 >> _S32) ^ c1 ^ ka[r], p1 & _U32, (p0 >> _S32) ^ c3 ^ kb[r], p0 & _U32
    return c0, c1, c2, c3


@numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy", inline="always")
def _philox_block_bits(b, ka, kb, purpose):  # pragma: no cover - compiled
    """The four labels (lowest bits) of block b."""
    c0, c1, c2, c3 = _philox_words(b, ka, kb, purpose)
    one = np.uint64(1)
    return np.float64(c0 & one), np.float64(c1 & one), np.float64(c2 & one), np.float64(c3 & one)


@numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy", inline="always")
def _philox_block(b, ka, kb, purpose):  # pragma: no cover - compiled
    """The four normals of block b: two Box-Muller pairs of its words."""
    c0, c1, c2, c3 = _philox_words(b, ka, kb, purpose)
    z0, z1 = _box_muller(c0, c1)
    z2, z3 = _box_muller(c2, c3)
    return z0, z1, z2, z3


@numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy", inline="always")
def _box_muller(wr, wa):  # pragma: no cover - compiled
    """√(−2 ln u)·(cos 2πu', sin 2πu') for u = (wr + 1)/2³², u' = wa/2³² (:mod:`thermosgd.twolayer.philox`).

    The quadrant turns (cos a, sin a) by arithmetic on its bits, not by branches.
    """
    u = (np.float64(wr) + 1.0) * PC.TWO_M32
    bits = np.float64(u).view(np.int64)
    e = (bits >> 52) - 1023
    m = np.int64((bits & 0x000FFFFFFFFFFFFF) | (1023 << 52)).view(np.float64)  # u = m·2^e, m ∈ [1, 2)
    big = m > PC.SQRT2
    m = m * 0.5 if big else m
    ef = np.float64(e + (1 if big else 0))
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p = 0.0
    for c in numba.literal_unroll(_LOG_COEFS):
        p = p * s2 + c
    lnu = (ef * PC.LN2_HI + s * p) + ef * PC.LN2_LO
    rad = np.sqrt(-2.0 * lnu)
    x = np.float64(wa) * PC.TWO_M32 * 4.0
    q = np.floor(x + 0.5)
    a = (x - q) * PC.HALF_PI
    a2 = a * a
    ps = 0.0
    for c in numba.literal_unroll(_SIN_COEFS):
        ps = ps * a2 + c
    pc = 0.0
    for c in numba.literal_unroll(_COS_COEFS):
        pc = pc * a2 + c
    sn = a * ps
    qi = np.int64(q)
    odd = (qi & 1) == 1
    cc = sn if odd else pc
    ss = pc if odd else sn
    return rad * (cc * np.float64(1 - 2 * ((qi ^ (qi >> 1)) & 1))), rad * (ss * np.float64(1 - 2 * ((qi >> 1) & 1)))
