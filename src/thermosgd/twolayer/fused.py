"""A fused CPU path for noise = "sgd": SGD steps and per-record instruments as compiled loops.

Opt-in (``[train] fused = true``); the reference is
:func:`thermosgd.twolayer.steps.sgd_step` (about fifteen batched torch ops per
step) plus :func:`thermosgd.twolayer.measure.measure`. Here the parameters of
all replicas live, for the whole run, in the kernels' layout, chosen by
:func:`ensemble`: for small nets (:class:`LaneEnsemble`) blocks of
:data:`LANES` replicas, replicas innermost, so the loops over them are
SIMD-vectorized, one replica per lane; for large nets (:class:`RowEnsemble`)
torch's own layout, one replica at a time along W's rows. One numba-compiled
call runs every step between two recorded steps (forward, hand-written
backward of Eq. 13/16, in-place update) for a range of replicas, so their
weights stay in cache for all those steps; ranges are split over threads
(numba releases the GIL; replicas never mix, so the thread count does not
change a single bit). The instruments of a recorded step are compiled too:
the cheap ones (‖V‖, ‖W‖, mean b, and for Gaussian inputs the exact activation
rate; torch reductions for large nets) and the probe-set ones (loss, error,
gradient variances, the counted activation rate; large nets leave their two
products over the probe set to torch's batched matmul). Runs with a held-out set compute their probe-step
instruments with the reference :func:`~thermosgd.twolayer.measure.measure`.

It consumes exactly the samples the reference consumes (the same CPU-drawn
chunks, in the same order), so per-replica random streams are unchanged. It
is equal to the reference to floating-point tolerance, not bit-identical: the
sums run in another order, and ‖W_i‖ is recomputed from W at recorded steps
instead of being tracked incrementally.

Needs numba (the ``fast`` extra: ``pip install thermosgd[fast]``).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from thermosgd.errors import UsageError
from thermosgd.twolayer.params import Params

#: Replicas per block: the kernels' innermost loops run over them (SIMD lanes). 64 measured faster
#: than 32 in 8 of 10 interleaved runs of the step kernel on fig3 (median 30.7 vs 26.5 M
#: replica-steps/s on 2 threads), and 32 faster than 16 (1.3–1.7×).
LANES = 64


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


_KERNELS: dict = {}


def _kernels() -> dict:
    """The compiled loops by name (compiled on first use, cached on disk by numba)."""
    if _KERNELS:
        return _KERNELS
    import numba

    Q = LANES  # a compile-time constant: the lane loops have a fixed trip count

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
    def probe(W, b, V, px, py, seed, mse, grads, out, k0, k1):  # pragma: no cover - compiled
        """Probe-set instruments per lane, into out (6, NB, Q): activation rate, loss, error,
        and the per-sample gradient variances (summed over entries, unnormalized) of V, W, b.

        px (S, P, M), py (S, P): each seed's probe set; seed (NB, Q): a lane's seed
        index. ``grads`` False: the activation rate only. Sums over samples run in
        float64; the loops over lanes are innermost (vectorized), one array per accumulator.
        """
        _, N, M, Q = W.shape
        P = px.shape[1]
        dt = W.dtype  # per-sample work and per-entry sums in the parameters' precision, as the reference
        X = np.empty((M, Q), dt)
        Z = np.empty((N, Q), dt)
        D = np.empty((N, Q), dt)
        gV = np.empty((N, Q), dt)
        gb = np.empty((N, Q), dt)
        gW = np.empty((N, M, Q), dt)
        F = np.empty(Q, dt)  # f, then ∂ℓ/∂f, of the current sample
        xx = np.empty(Q, dt)
        d2 = np.empty(Q, dt)
        a2 = np.empty(Q, dt)
        zero = np.zeros(1, dt)[0]  # a typed constant: no float64 promotion
        active = np.empty(Q)
        lsum = np.empty(Q)
        esum = np.empty(Q)
        sV = np.empty(Q)  # Σ_p e² ‖a‖²
        sb = np.empty(Q)  # Σ_p ‖δ‖²
        sW = np.empty(Q)  # Σ_p ‖δ‖² ‖x‖²
        for k in range(k0, k1):
            for arr in (active, lsum, esum, sV, sb, sW):
                arr[:] = 0
            gV[:] = 0
            gb[:] = 0
            gW[:] = 0
            for p in range(P):
                for m in range(M):
                    for q in range(Q):
                        X[m, q] = px[seed[k, q], p, m]
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
                        active[q] += 1.0 if z > 0 else 0.0
                        F[q] += max(z, zero) * V[k, i, q]
                if not grads:
                    continue
                for q in range(Q):
                    f, y = F[q], py[seed[k, q], p]
                    if mse:
                        lsum[q] += 0.5 * (f - y) ** 2
                        F[q] = f - y
                    else:  # softplus(f) − y f, overflow-free (log(1 + t) in float64 rather than
                        # log1p(t): libm's log1p took 1.5–1.9× log's time here; error < 2e-16 absolute)
                        lsum[q] += max(f, 0.0) + math.log(1.0 + math.exp(-abs(f))) - y * f
                        F[q] = 1 / (1 + math.exp(-f)) - y
                    esum[q] += (1.0 if f > 0 else 0.0) != y
                for q in range(Q):  # per-sample gradients, lanes innermost
                    xx[q] = zero
                    d2[q] = zero
                    a2[q] = zero
                for m in range(M):
                    for q in range(Q):
                        xx[q] += X[m, q] * X[m, q]
                for i in range(N):
                    for q in range(Q):
                        e, z = F[q], Z[i, q]
                        a = max(z, zero)
                        d = e * V[k, i, q] if z > zero else zero
                        D[i, q] = d
                        gV[i, q] += e * a
                        a2[q] += a * a
                        gb[i, q] += d
                        d2[q] += d * d
                    for m in range(M):
                        for q in range(Q):
                            gW[i, m, q] += D[i, q] * X[m, q]
                for q in range(Q):  # per-sample sums into float64 once per sample
                    sV[q] += F[q] * F[q] * a2[q]
                    sb[q] += d2[q]
                    sW[q] += d2[q] * xx[q]
            corr = P / (P - 1)
            for q in range(Q):
                mV, mb, mW = 0.0, 0.0, 0.0
                for i in range(N):
                    mV += (gV[i, q] / P) ** 2
                    mb += (gb[i, q] / P) ** 2
                    for m in range(M):
                        mW += (gW[i, m, q] / P) ** 2
                out[0, k, q] = active[q] / (P * N)
                out[1, k, q] = lsum[q] / P
                out[2, k, q] = esum[q] / P
                out[3, k, q] = (sV[q] / P - mV) * corr
                out[4, k, q] = (sW[q] / P - mW) * corr
                out[5, k, q] = (sb[q] / P - mb) * corr

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
                    lsum += max(f, 0.0) + math.log(1.0 + math.exp(-abs(f))) - y * f
                    e = 1 / (1 + math.exp(-f)) - y
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

    _KERNELS.update(
        steps=steps, metrics=metrics, probe=probe, row_steps=row_steps, row_steps1=row_steps1, row_probe=row_probe
    )
    return _KERNELS


_POOL: ThreadPoolExecutor | None = None


#: Multiply-adds per call below which one thread is faster than waking others (measured:
#: the cheap instruments of 1024 replicas of 10×10, 10⁵ multiply-adds, took 0.1 ms on one
#: thread and 1 ms on two of a busy 2-core machine).
_MIN_PARALLEL_WORK = 1 << 20


def _parallel(fn, blocks: int, threads: int, work: int) -> None:
    """``fn(k0, k1)`` over contiguous ranges of ``blocks`` blocks, on up to ``threads`` threads.

    ``work`` (multiply-adds of the whole call) below :data:`_MIN_PARALLEL_WORK` runs on one.
    """
    global _POOL
    parts = max(1, min(threads, blocks, 1 + work // _MIN_PARALLEL_WORK))
    if parts == 1:
        fn(0, blocks)
        return
    if _POOL is None or _POOL._max_workers < parts:
        _POOL = ThreadPoolExecutor(max_workers=max(parts, 2), thread_name_prefix="thermosgd-fused")
    edges = [blocks * i // parts for i in range(parts + 1)]
    for f in [_POOL.submit(fn, edges[i], edges[i + 1]) for i in range(parts)]:
        f.result()


def _probe_values(
    vals: torch.Tensor, var_W: torch.Tensor, batch_size: torch.Tensor, *, N: int, M: int, bias: bool
) -> dict[str, torch.Tensor]:
    """A probe kernel's rows as :func:`~thermosgd.twolayer.measure.probe_metrics`' instruments, each (R,).

    ``vals`` (6, R): activation rate, loss, error, the per-sample gradient
    variance of V summed over entries, a row for W that only the lane kernel
    fills with its variance (hence ``var_W``, (R,), given apart), and b's.
    Normalized per entry and by each replica's |B| (``batch_size``, (R,)).
    """
    bsz = batch_size.to(vals.dtype)
    var_V, var_b = vals[3], vals[5]
    n_b = N if bias else 0
    total = var_V + var_W + (var_b if n_b else 0)
    return {
        "activation_rate": vals[0],
        "loss": vals[1],
        "error": vals[2],
        "grad_var_V": var_V / (N * bsz),
        "grad_var_W": var_W / (N * M * bsz),
        "grad_var_b": var_b / (N * bsz),
        "grad_var": total / ((N + N * M + n_b) * bsz),
    }


#: Inputs from which replicas run one at a time along W's rows (:class:`RowEnsemble`)
#: instead of in SIMD lanes (:class:`LaneEnsemble`); see :func:`ensemble`.
ROW_INPUTS = 32


def ensemble(p: Params, wl: torch.Tensor, stream: np.ndarray):
    """The kernels' state for ``p``: lanes of replicas for small nets, rows of W for large ones.

    With M ≥ :data:`ROW_INPUTS` inputs a row of W fills SIMD registers by itself,
    so one replica at a time keeps its W in cache and skips inactive units' rows;
    below, replicas side by side in lanes vectorize better (both measured in
    ``benchmarks/bench_engine.py``).
    """
    if p.W.shape[2] >= ROW_INPUTS:
        return RowEnsemble(p, wl, stream)
    return LaneEnsemble(p, wl, stream)


class RowEnsemble:
    """R replicas' W, b, V in torch's own layout, shared with ``p`` (no copies).

    The probe-set instruments of large nets do their two products over the probe
    set (pre-activations, mean gradient of W) as torch's batched matrix products,
    which beat a compiled loop there, and everything per sample in one compiled
    pass (:meth:`probe`).
    """

    compiled_probe = True

    def __init__(self, p: Params, wl: torch.Tensor, stream: np.ndarray):
        for t in (p.W, p.b, p.V):
            if not t.is_contiguous():
                raise ValueError("RowEnsemble needs contiguous parameters")  # init_ensemble makes them so
        self.p = p
        self.W, self.b, self.V = p.W.numpy(), p.b.numpy(), p.V.numpy()  # views: updates land in p
        self.wl = wl.detach().clone().contiguous().numpy()
        self.stream = np.ascontiguousarray(stream, dtype=np.int64)
        self.R = self.W.shape[0]

    def store(self, p: Params) -> None:
        """Nothing to copy: the arrays are views of ``p``'s tensors."""
        assert p is self.p

    def steps(self, xs: np.ndarray, ys: np.ndarray, c0: int, n: int, *, loss: str, bias: bool, threads: int) -> None:
        """As :meth:`LaneEnsemble.steps`."""
        kernel = _kernels()["row_steps1" if xs.shape[2] == 1 else "row_steps"]
        _parallel(
            lambda r0, r1: kernel(
                self.W, self.b, self.V, xs, ys, self.wl, self.stream, c0, n, loss == "mse", bias, r0, r1
            ),
            self.R,
            threads,
            self.W.size * n * xs.shape[2],
        )

    def cheap(self, threads: int) -> dict[str, torch.Tensor]:
        """As :meth:`LaneEnsemble.cheap`, computed by torch on the shared tensors."""
        p = self.p
        rows = p.W.norm(dim=-1)
        return {
            "v_norm": p.V.norm(dim=-1),
            "w_norm": rows.norm(dim=-1),
            "bias_mean": p.b.mean(-1),
            "activation_rate": torch.special.ndtr(p.b / rows).mean(-1),
            "finite_sum": p.V.sum(-1) + p.b.sum(-1) + p.W.sum((-1, -2)),
        }

    def probe(
        self,
        px: torch.Tensor,
        py: torch.Tensor,
        batch_size: torch.Tensor,
        *,
        loss: str,
        bias: bool,
        grads: bool,
        threads: int,
    ) -> dict[str, torch.Tensor]:
        """As :meth:`LaneEnsemble.probe`."""
        p, R = self.p, self.R
        S = px.shape[0]
        seed = np.arange(R) % S
        if getattr(self, "_px", (None,))[0] is not px:  # the probe set is fixed: expand it once per run
            self._px = (px, px[torch.from_numpy(seed)], (px * px).sum(-1).numpy())
        xr, xx = self._px[1], self._px[2]
        z = torch.baddbmm(p.b.unsqueeze(1), xr, p.W.mT)  # (R, P, N)
        delta = torch.empty_like(z) if grads else z[:, :0]
        out = np.full((6, R), np.nan)
        kernel = _kernels()["row_probe"]
        Zn, Vn, dn, pyn = z.numpy(), self.V, delta.numpy(), np.ascontiguousarray(py.numpy())
        _parallel(
            lambda r0, r1: kernel(Zn, Vn, pyn, seed, xx, loss == "mse", grads, dn, out, r0, r1),
            R,
            threads,
            z.numel() * (2 if grads else 1),
        )
        vals = torch.from_numpy(out).to(p.W.dtype)
        if not grads:
            return {"activation_rate": vals[0]}
        P, N, M = z.shape[1], self.W.shape[1], self.W.shape[2]
        gW = torch.bmm(delta.mT, xr).div_(P)  # mean per-sample gradient of W, (R, N, M)
        var_W = (torch.from_numpy(out[4]) - gW.pow(2).sum((-1, -2)).double()) * (P / (P - 1))
        return _probe_values(vals, var_W.to(p.W.dtype), batch_size, N=N, M=M, bias=bias)

    def freeze(self, bad: np.ndarray) -> None:
        """NaN parameters and zero step weights for the replicas in the (R,) mask ``bad``."""
        if bad.any():
            for a in (self.W, self.b, self.V):
                a[bad] = np.nan
            self.wl[bad] = 0.0


class LaneEnsemble:
    """R replicas' W, b, V (and per-sample step weights) in the kernels' layout.

    Arrays are ``(NB, ..., LANES)``: replica r is lane r % LANES of block
    r // LANES; padded lanes have step weight 0 (they never move).
    """

    compiled_probe = True

    def __init__(self, p: Params, wl: torch.Tensor, stream: np.ndarray):
        """Copy ``p`` (W (R, N, M), b (R, N), V (R, N)) and ``wl`` (R, B) in.

        ``stream`` (R,): the row of the sample chunk each replica reads.
        """
        self.R = p.W.shape[0]
        self.blocks = -(-self.R // LANES)
        self._pad = self.blocks * LANES - self.R
        self.W, self.b, self.V, self.wl = (self._soa(t) for t in (p.W, p.b, p.V, wl))
        self.stream = (
            np.concatenate([stream, np.zeros(self._pad, np.int64)]).astype(np.int64).reshape(self.blocks, LANES)
        )

    def _soa(self, t: torch.Tensor) -> np.ndarray:
        """(R, *shape) → (NB, *shape, LANES), padded lanes zero."""
        t = t.detach().cpu()
        if self._pad:
            t = torch.cat([t, t.new_zeros(self._pad, *t.shape[1:])])
        return t.reshape(self.blocks, LANES, *t.shape[1:]).movedim(1, -1).contiguous().numpy()

    def _aos(self, a: np.ndarray) -> torch.Tensor:
        """Inverse of :meth:`_soa` (a view-based copy source)."""
        t = torch.from_numpy(a).movedim(-1, 1)
        return t.reshape(self.blocks * LANES, *t.shape[2:])[: self.R]

    def store(self, p: Params) -> None:
        """Copy W, b, V back into ``p``'s tensors, in place."""
        for t, a in ((p.W, self.W), (p.b, self.b), (p.V, self.V)):
            t.copy_(self._aos(a))

    def steps(self, xs: np.ndarray, ys: np.ndarray, c0: int, n: int, *, loss: str, bias: bool, threads: int) -> None:
        """Advance every replica by steps ``c0 .. c0 + n`` of a sample chunk, in place.

        Args:
            xs: (streams, chunk, B, M) inputs; ys: (streams, chunk, B) labels (C-contiguous).
            c0, n: the first step within the chunk and the number of steps.
            loss: "bce" or "mse". bias: update b. threads: threads to split blocks over.
        """
        kernel = _kernels()["steps"]
        _parallel(
            lambda k0, k1: kernel(
                self.W, self.b, self.V, xs, ys, self.wl, self.stream, c0, n, loss == "mse", bias, k0, k1
            ),
            self.blocks,
            threads,
            self.W.size * n * xs.shape[2],
        )

    def cheap(self, threads: int) -> dict[str, torch.Tensor]:
        """The cheap instruments, each (R,): ``v_norm``, ``w_norm``, ``bias_mean``,
        ``activation_rate`` (exact for x ~ N(0, I)) and ``finite_sum`` (non-finite
        iff some parameter is)."""
        kernel = _kernels()["metrics"]
        out = np.empty((4, self.blocks, LANES), self.W.dtype)
        ratio = np.empty((self.blocks, self.W.shape[1], LANES), self.W.dtype)
        _parallel(lambda k0, k1: kernel(self.W, self.b, self.V, out, ratio, k0, k1), self.blocks, threads, self.W.size)
        flat = torch.from_numpy(out.reshape(4, -1)[:, : self.R])
        # x ~ N(0, I): unit i is active w.p. Φ(b_i/‖W_i‖), as in measure.measure (torch's ndtr, vectorized).
        rate = torch.special.ndtr(torch.from_numpy(ratio)).mean(1).reshape(-1)[: self.R]
        return {
            "v_norm": flat[0],
            "w_norm": flat[1],
            "bias_mean": flat[2],
            "activation_rate": rate,
            "finite_sum": flat[3],
        }

    def probe(
        self,
        px: torch.Tensor,
        py: torch.Tensor,
        batch_size: torch.Tensor,
        *,
        loss: str,
        bias: bool,
        grads: bool,
        threads: int,
    ) -> dict[str, torch.Tensor]:
        """The probe-set instruments of :func:`thermosgd.twolayer.measure.probe_metrics`, each (R,).

        Args:
            px: (S, P, M) and py: (S, P), the probe set of each seed; replica r uses seed r % S.
            batch_size: (R,) each replica's |B|. loss: "bce" or "mse". bias: b is trained.
            grads: also loss, error and gradient variances (else the activation rate only).
            threads: threads to split blocks over.
        """
        kernel = _kernels()["probe"]
        S = px.shape[0]
        seed = (np.arange(self.blocks * LANES) % S).reshape(self.blocks, LANES)
        dt = self.W.dtype
        px, py = (np.ascontiguousarray(v.numpy(), dtype=dt) for v in (px, py))
        out = np.empty((6, self.blocks, LANES))
        _parallel(
            lambda k0, k1: kernel(self.W, self.b, self.V, px, py, seed, loss == "mse", grads, out, k0, k1),
            self.blocks,
            threads,
            self.W.size * px.shape[1] * (2 if grads else 1),
        )
        vals = torch.from_numpy(out.reshape(6, -1)[:, : self.R]).to(
            torch.float32 if dt == np.float32 else torch.float64
        )
        if not grads:
            return {"activation_rate": vals[0]}
        return _probe_values(vals, vals[4], batch_size, N=self.W.shape[1], M=self.W.shape[2], bias=bias)

    def freeze(self, bad: np.ndarray) -> None:
        """NaN parameters and zero step weights for the replicas in the (R,) mask ``bad``."""
        if not bad.any():
            return
        idx = np.nonzero(bad)[0]
        k, q = idx // LANES, idx % LANES
        for a in (self.W, self.b, self.V):
            a[k, ..., q] = np.nan
        self.wl[k, :, q] = 0.0
