"""High-precision reference for the Gaussian closed forms of ``thermosgd.twolayer.theory``.

Every expectation is a one-dimensional integral over ``u = (z − b)/s ~ N(0, 1)``
on the active region ``u > −a`` (``a = b/s``), evaluated by mpmath's
tanh-sinh quadrature at 30 significant digits. ``b``-derivatives follow from
differentiating under the integral (Leibniz): the boundary term vanishes for
``E σ(z)²`` and is the whole derivative, ``φ(a)/s``, for ``P(z > 0)``.
Nothing is borrowed from the module's formulas (no Mills ratio, no erfc), and
mpmath numbers do not underflow, so the reference holds far below float64.
"""

from __future__ import annotations

import mpmath as mp

DPS = 30


def _active_integral(f, a):
    """``∫_{−a}^∞ f(u) φ(u) du`` with breakpoints at the integrand's length scale.

    mpmath's quadrature stops on an absolute error, so the integrand is divided
    by ``φ(m)``, ``m = max(−a, 0)``, its size where the mass starts, and the
    result multiplied back: the tolerance becomes relative, however small φ is.
    """
    lo = -a
    m = max(lo, 0)
    # Below the mean (lo > 0) the mass sits within ~1/lo of lo; above it, within ~1 of 0.
    w = 1 / (1 + m)
    pts = sorted({lo, lo + w, lo + 8 * w, lo + 40 * w, m + 12})
    scale = mp.npdf(m)
    return scale * mp.quad(lambda u: f(u) * (mp.npdf(u) / scale), pts + [mp.inf])


def reference(W, b, Vs, err2):
    """Every closed form of ``thermosgd.twolayer.theory`` for one unit, as mpmath numbers.

    Args:
        W: incoming weights, a sequence of floats (``s = ‖W‖ > 0``).
        b: bias, float.
        Vs: outgoing weights, a sequence of floats (only ``h_w``, ``h_b`` and ψ depend on V).
        err2: ``E[(p − y)²]``, float.

    Returns:
        dict: ``activation_rate, h_v, phi1, phi2, dphi1_db, dphi2_db`` (numbers),
        ``h_w`` (one list of length ``len(W)`` per V), ``h_b`` and ``psi`` (one number per V).
    """
    with mp.workdps(DPS):
        b, err2 = mp.mpf(b), mp.mpf(err2)
        W = [mp.mpf(w) for w in W]
        s = mp.sqrt(mp.fsum(w * w for w in W))
        a = b / s
        act = _active_integral(lambda u: 1, a)  # E σ'(z)
        relu2 = _active_integral(lambda u: (b + s * u) ** 2, a)  # E σ(z)²
        d_relu2 = _active_integral(lambda u: 2 * (b + s * u), a)  # ∂_b E σ(z)²
        d_act = mp.npdf(a) / s  # ∂_b E σ'(z): the boundary term
        u2_act = _active_integral(lambda u: u * u, a)  # E[u² σ'(z)]
        p1, p2 = mp.sqrt(err2 * relu2), mp.sqrt(err2 * act)
        d1, d2 = err2 * d_relu2 / (2 * p1), err2 * d_act / (2 * p2)
        out = {
            "activation_rate": act,
            "h_v": relu2,
            "phi1": p1,
            "phi2": p2,
            "dphi1_db": d1,
            "dphi2_db": d2,
            "h_w": [],
            "h_b": [],
            "psi": [],
        }
        for V in map(mp.mpf, Vs):
            # E[x_j² | u] = 1 + (W_j/s)² (u² − 1): x_j given its projection u on W/s.
            out["h_w"].append([V * V * (act + (w / s) ** 2 * (u2_act - act)) for w in W])
            out["h_b"].append(V * V * act)
            num = V * p1 * p2**2 + V * p1 * p2 * d1 + V**3 * p2**2 * d2
            out["psi"].append(num / (2 * mp.sqrt(p1**2 + V**2 * p2**2)))
        return out
