"""Counter-based draws: Philox4x32-10 (Salmon et al., SC 2011) and standard normals from it.

Why a second generator: the G-sample controls draw G·M fresh Gaussian inputs per step and
stream (10⁵–10⁶ per step on the fig3 grid), and torch's CPU sampler, a Mersenne Twister
that makes one number at a time, took 0.75 ms of a fig3 step, more than the compiled step
itself. Philox is counter-based: block i of a stream is a pure function of (key, i), so
the loop over blocks runs in SIMD lanes, and any stretch of a stream is the same bits
whoever draws it and however a draw is split.

A stream is a key (two 32-bit words, from a 63-bit seed of :mod:`thermosgd.seeds`) and a
``purpose`` word: counter (i mod 2³², i div 2³², purpose, 0) gives block i, four 32-bit
words. Normal n of the stream is lane n mod 4 of block n div 4; lanes (0, 1) and (2, 3)
are Box-Muller pairs of u = (k + 1)/2³² ∈ (0, 1] (the radius, so log u is finite; |z| ≤ 6.66)
and u' = k'/2³² ∈ [0, 1) (the angle): z = √(−2 ln u)·(cos 2πu', sin 2πu'). ln, cos and sin are
polynomials in float64 (below), ln within 4·10⁻¹⁶ relative and sin, cos within 10⁻¹⁵ absolute, so that the compiled loop
vectorizes (numba's libm calls do not); the result is rounded once to the output dtype.

Labels (:func:`labels_into`) are the lowest bit of each word, one word per label.

Two implementations of the same arithmetic: :func:`_draws_numpy` (NumPy, the reference and
the fallback without numba) and the compiled :func:`thermosgd.twolayer._kernels.philox_draw`
(no fastmath: no fused multiply-adds, so the same operations in the same order).
"""

from __future__ import annotations

import numpy as np

from thermosgd.twolayer import compiled
from thermosgd.twolayer.philox_constants import (
    COS_COEFS,
    HALF_PI,
    LN2_HI,
    LN2_LO,
    LOG_COEFS,
    M0,
    M1,
    ROUNDS,
    SIN_COEFS,
    SQRT2,
    TWO_M32,
    W0,
    W1,
)

__all__ = ["block", "key_of", "labels_into", "normals_into", "prepare"]


def key_of(seed: int) -> tuple[int, int]:
    """The Philox key (two 32-bit words) of a 63-bit seed from :func:`thermosgd.seeds.derive_seed`."""
    return seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF


def block(ctr: tuple[int, int, int, int], key: tuple[int, int]) -> tuple[int, int, int, int]:
    """Philox4x32-10 of one counter, in Python integers: the slow, obviously-right twin."""
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for r in range(ROUNDS):
        if r:
            k0, k1 = (k0 + W0) & 0xFFFFFFFF, (k1 + W1) & 0xFFFFFFFF
        p0, p1 = M0 * c0, M1 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & 0xFFFFFFFF, (p0 >> 32) ^ c3 ^ k1, p0 & 0xFFFFFFFF
    return c0, c1, c2, c3


def normals_into(out: np.ndarray, seed: int, purpose: int, start: int) -> None:
    """Normals start..start+len(out) of the stream (seed, purpose) into ``out`` (1-d, float32 or float64).

    The compiled loop when numba imports, else NumPy: the same numbers either way (tested).
    """
    _draw_into(out, seed, purpose, start, labels=False)


def labels_into(out: np.ndarray, seed: int, purpose: int, start: int) -> None:
    """Fair 0/1 labels start..start+len(out) of the stream (seed, purpose): the lowest bit of each
    32-bit word (word n is lane n mod 4 of block n div 4), into ``out`` as :func:`normals_into`."""
    _draw_into(out, seed, purpose, start, labels=True)


def prepare(dtype: np.dtype | type = np.float32) -> None:
    """Compile (or load from numba's cache) the loop for ``out`` arrays of ``dtype`` now: processes
    forked after this inherit it, instead of each compiling it (and writing numba's cache) at once."""
    if compiled.available():
        compiled.kernels().philox_draw(np.empty(1, dtype), np.uint64(0), np.uint64(0), np.uint64(0), np.int64(0), False)


def _draw_into(out: np.ndarray, seed: int, purpose: int, start: int, labels: bool) -> None:
    if out.ndim != 1 or not out.flags.c_contiguous or out.dtype not in (np.float32, np.float64):
        raise ValueError("Philox draws need a contiguous 1-d float32 or float64 array")
    k0, k1 = key_of(seed)
    kernels = compiled.kernels() if compiled.available() else None
    if kernels is None:
        out[:] = _draws_numpy(len(out), k0, k1, purpose, start, labels)
    else:
        kernels.philox_draw(out, np.uint64(k0), np.uint64(k1), np.uint64(purpose), np.int64(start), labels)


def _words_numpy(blocks: np.ndarray, k0: int, k1: int, purpose: int) -> tuple[np.ndarray, ...]:
    """Philox4x32-10 of counters (blocks mod 2³², blocks div 2³², purpose, 0), vectorized: 4 × (n,) uint64 words."""
    mask = np.uint64(0xFFFFFFFF)
    c0 = blocks & mask
    c1 = blocks >> np.uint64(32)
    c2 = np.full_like(blocks, purpose)
    c3 = np.zeros_like(blocks)
    ka, kb = np.uint64(k0), np.uint64(k1)
    for r in range(ROUNDS):
        if r:
            ka, kb = (ka + np.uint64(W0)) & mask, (kb + np.uint64(W1)) & mask
        p0, p1 = np.uint64(M0) * c0, np.uint64(M1) * c2
        c0, c1, c2, c3 = (p1 >> np.uint64(32)) ^ c1 ^ ka, p1 & mask, (p0 >> np.uint64(32)) ^ c3 ^ kb, p0 & mask
    return c0, c1, c2, c3


def _log_numpy(u: np.ndarray) -> np.ndarray:
    """ln u for u ∈ (0, 1] (float64), the polynomial of the module docstring."""
    bits = u.view(np.int64)
    e = (bits >> 52) - 1023
    m = ((bits & 0x000FFFFFFFFFFFFF) | (1023 << 52)).view(np.float64)  # u = m·2^e, m ∈ [1, 2)
    big = m > SQRT2
    m = np.where(big, m * 0.5, m)
    e = (e + big).astype(np.float64)
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p = np.zeros_like(s)
    for c in LOG_COEFS:
        p = p * s2 + c
    return (e * LN2_HI + s * p) + e * LN2_LO


def _sincos_numpy(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cos πx/2, sin πx/2) for x = 4u' ∈ [0, 4) (float64): quadrant q = round(x), then a = (x − q)π/2,
    |a| ≤ π/4; the quadrant turns (cos a, sin a) by arithmetic on its bits (as the compiled loop, where
    branches kept it scalar)."""
    q = np.floor(x + 0.5)
    a = (x - q) * HALF_PI
    a2 = a * a
    ps = np.zeros_like(a)
    for c in SIN_COEFS:
        ps = ps * a2 + c
    pc = np.zeros_like(a)
    for c in COS_COEFS:
        pc = pc * a2 + c
    s = a * ps
    qi = q.astype(np.int64)
    odd = (qi & 1) == 1
    cos = np.where(odd, s, pc) * (1 - 2 * ((qi ^ (qi >> 1)) & 1)).astype(np.float64)
    sin = np.where(odd, pc, s) * (1 - 2 * ((qi >> 1) & 1)).astype(np.float64)
    return cos, sin


def _draws_numpy(n: int, k0: int, k1: int, purpose: int, start: int, labels: bool = False) -> np.ndarray:
    """Normals (or labels) start..start+n of the stream, float64 (the reference of the compiled loop)."""
    if n == 0:
        return np.zeros(0)
    first, last = start // 4, (start + n - 1) // 4
    w = _words_numpy(np.arange(first, last + 1, dtype=np.uint64), k0, k1, purpose)
    z = np.empty((last - first + 1, 4))
    if labels:
        for lane in range(4):
            z[:, lane] = (w[lane] & np.uint64(1)).astype(np.float64)
    for lane in () if labels else (0, 2):
        r = np.sqrt(-2.0 * _log_numpy((w[lane].astype(np.float64) + 1.0) * TWO_M32))
        cos, sin = _sincos_numpy(w[lane + 1].astype(np.float64) * TWO_M32 * 4.0)
        z[:, lane], z[:, lane + 1] = r * cos, r * sin
    return z.reshape(-1)[start - 4 * first : start - 4 * first + n]
