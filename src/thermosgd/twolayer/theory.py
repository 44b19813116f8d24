"""Theory of the two-layer model: h functions, φ1, φ2, ψ and J_t (Sec. 4–5, Eq. 23–27).

One hidden unit is described by its outgoing weight ``V``, incoming weights
``W`` and bias ``b``; its pre-activation is ``z = W·x + b`` and ``σ`` is ReLU.
Everything here is per unit (the paper drops the unit index ``i``), in closed
form for Gaussian inputs ``x ~ N(0, I_M)``, where ``z ~ N(b, s²)`` with
``s = ‖W‖`` (``s > 0`` is required; ``W = 0`` gives NaN or a step).

All functions take float or tensor arguments, compute in float64 with torch
(so autograd works) and broadcast over leading dims: ``V: (...)``,
``W: (..., M)``, ``b: (...)``, result ``(...)`` (``h_w``: ``(..., M)``).
Shapes that do not broadcast raise :class:`~thermosgd.errors.UsageError`
naming every argument's shape.

The loss-residual factor ``(p − y)²`` of Eq. 23 and 25 enters through
``err2 = E[(p − y)²]``, under the paper's assumption (Sec. 5) that ``p − y``
is independent of ``∇f`` early in training (``err2 = 1/4`` at initialization
with balanced random labels and ``p ≈ 1/2``).

Closed forms used (``a = b/s``, ``Φ``/``φ`` the standard normal cdf/pdf,
``u = (z − b)/s ~ N(0, 1)``, ``M_k = E[(a + u)_+^k]``):

* ``E σ'(z) = M0 = Φ(a)``,
* ``E σ(z) = s M1 = s [a Φ(a) + φ(a)]``,
* ``E σ(z)² = s² M2 = s² [(1 + a²) Φ(a) + a φ(a)]``,
* ``E[x_j² σ'(z)] = Φ(a) − (W_j/s)² a φ(a)``. Given ``u``, ``x_j`` is Gaussian
  with mean ``(W_j/s) u`` and variance ``1 − (W_j/s)²``, so
  ``E[x_j² | u] = 1 + (W_j/s)² (u² − 1)``; with ``E[1{u > −a}] = Φ(a)`` and
  ``E[u² 1{u > −a}] = Φ(a) − a φ(a)`` this gives the formula.

Lower tail. For ``a → −∞`` every quantity here decays like a power of
``φ(a)``, and ``torch.special.ndtr`` is 0 below ``a ≈ −8.5``; the formulas
above also cancel (``M2 ≈ 2 φ(a)/|a|³`` is the difference of two terms of size
``|a| φ(a)``). For ``a < 0`` everything is therefore computed as
``M_k = φ(a) J_k``, with ``log φ(a)`` kept in log space and the scaled moments
``J_k = ∫_0^∞ v^k e^{−cv − v²/2} dv`` (``c = −a``) from the Mills ratio:
``erfcx`` for ``c < 4``, Laplace's continued fraction, which does not cancel,
beyond. Results keep their relative precision (about 1e-13, tested against
mpmath quadrature) as long as they are normal float64 numbers: down to
``a ≈ −37`` for ``Φ``, the h functions and ψ, which decay like ``φ(a)``, and
beyond ``a = −40`` for φ1, φ2 and their ``b``-derivatives, which decay like
``φ(a)^{1/2}``. Below that they underflow gradually to 0.

Monte Carlo versions of these functions for any input sample live beside the
tests that check the closed forms against them (``tests/twolayer/mc_twins.py``).
"""

from __future__ import annotations

import math

import torch

from thermosgd.errors import UsageError

Tensor = torch.Tensor
_DTYPE = torch.float64
_LOG_INV_SQRT_2PI = -0.5 * math.log(2.0 * math.pi)

# Below a = −_TAIL the scaled moments come from a continued fraction (see
# _scaled_moments), above it from the Mills ratio via erfcx.
_TAIL = 4.0
_CF_TERMS = 40

__all__ = [
    "activation_rate",
    "h_v",
    "h_w",
    "h_b",
    "phi1",
    "phi2",
    "dphi1_db",
    "dphi2_db",
    "psi",
    "thermophoretic_flow",
]


def _t(value) -> Tensor:
    if isinstance(value, Tensor):
        return value.to(_DTYPE)
    return torch.as_tensor(value, dtype=_DTYPE)


def _check_shapes(**args) -> None:
    """Refuse arguments whose shapes do not broadcast over the same units (one line naming every shape).

    ``W`` is ``(..., M)`` and is compared by its leading dims; every other argument is ``(...)``.
    Without this check a mismatch surfaces as torch's RuntimeError from deep inside a formula.
    """
    shapes = {}
    for name, value in args.items():
        try:
            shapes[name] = tuple(_t(value).shape)
        except (TypeError, ValueError, RuntimeError):
            raise UsageError(
                f"{name} must be a float or a tensor of real numbers, got {type(value).__name__}", param=name
            ) from None
    units: tuple[int, ...] = ()
    for name, shape in shapes.items():
        try:
            units = tuple(torch.broadcast_shapes(units, shape[:-1] if name == "W" else shape))
        except RuntimeError:
            shown = ", ".join(f"{n} {s}" for n, s in shapes.items())
            raise UsageError(
                f"argument shapes do not match: {shown}; W is (..., M) and every other argument (...), "
                "and the leading dims of all must broadcast together (one entry per unit)",
                param=name,
            ) from None


def _gaussian_stats(W, b) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Return ``(W, b, s, a)`` as float64 tensors, ``s = ‖W‖``, ``a = b/s``."""
    W, b = _t(W), _t(b)
    s = torch.linalg.vector_norm(W, dim=-1)
    return W, b, s, b / s


def _expand(value: Tensor, *shapes) -> Tensor:
    return value.expand(torch.broadcast_shapes(value.shape, *shapes))


def _scaled_moments(a: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Truncated Gaussian moments ``M_k = E[(a + u)_+^k] = q J_k`` with ``q`` in log space.

    Args:
        a: ``b/s``, ``(...)``.

    Returns:
        ``(log_q, log_pdf, J0, J1, J2)``, each ``(...)``: ``log_pdf = log φ(a)``;
        for ``a ≥ 0``, ``q = 1`` and ``J_k = M_k`` (direct formulas, no
        cancellation); for ``a < 0``, ``q = φ(a)`` and ``J_k = M_k/φ(a)``, with
        ``c = −a``: ``J0 = R``, ``J1 = 1 − c R``, ``J2 = (1 + c²) R − c``, where
        ``R = Φ(−c)/φ(c)`` is the Mills ratio. ``J_k > 0`` wherever ``a`` is finite.
    """
    log_pdf = -0.5 * a * a + _LOG_INV_SQRT_2PI
    # Each branch sees an argument clamped to its own range, so the branches
    # torch.where discards stay finite and pass zero gradient, not NaN.
    ap = torch.clamp(a, min=0.0)
    cdf = torch.special.ndtr(ap)
    pdf = torch.exp(-0.5 * ap * ap + _LOG_INV_SQRT_2PI)
    direct = (cdf, ap * cdf + pdf, (1 + ap * ap) * cdf + ap * pdf)
    # 0 < c < 4: R from erfcx; the differences lose at most ~c⁴ ulp (≈ 6e-14).
    cm = torch.clamp(-a, min=0.0, max=_TAIL)
    r = math.sqrt(math.pi / 2) * torch.special.erfcx(cm / math.sqrt(2))
    j1 = 1 - cm * r
    mills = (r, j1, r - cm * j1)
    # c ≥ 4: Laplace's continued fraction R = 1/(c + T1), T_k = k/(c + T_{k+1}).
    # From R (c + T1) = 1 and T1 (c + T2) = 1: 1 − cR = R T1 and
    # R − c J1 = R T1 T2, products with no cancellation. 40 terms are exact to
    # rounding for every c ≥ 4.
    c = torch.clamp(-a, min=_TAIL)
    t2 = torch.zeros_like(c)
    for k in range(_CF_TERMS, 1, -1):
        t2 = k / (c + t2)
    t1 = 1.0 / (c + t2)
    r = 1.0 / (c + t1)
    fraction = (r, r * t1, r * t1 * t2)
    neg, tail = a < 0, a < -_TAIL
    js = [torch.where(neg, torch.where(tail, f, m), d) for d, m, f in zip(direct, mills, fraction)]
    log_q = torch.where(neg, log_pdf, torch.zeros_like(log_pdf))
    return log_q, log_pdf, js[0], js[1], js[2]


# --------------------------------------------------------------------------
# h functions for x ~ N(0, I)
# --------------------------------------------------------------------------


def activation_rate(W, b) -> Tensor:
    """Probability that the unit is active, ``E σ'(z) = Φ(b/‖W‖)`` (Eq. 14, one unit).

    Args:
        W: incoming weights, ``(..., M)``.
        b: bias, ``(...)``.

    Returns:
        ``(...)`` activation probability in ``[0, 1]``.
    """
    _check_shapes(W=W, b=b)
    _, _, _, a = _gaussian_stats(W, b)
    return torch.exp(torch.special.log_ndtr(a))


def h_v(V, W, b) -> Tensor:
    """``h_v = E_x[(∇_V f)²] = E σ(z)² = (b² + s²) Φ(b/s) + b s φ(b/s)``.

    Independent of ``V``; ``V`` is accepted to match the paper's signature
    ``h_v(V, W, b)`` and only broadcasts the result.

    Args:
        V: outgoing weight, ``(...)``.
        W: incoming weights, ``(..., M)``.
        b: bias, ``(...)``.

    Returns:
        ``(...)``.
    """
    _check_shapes(V=V, W=W, b=b)
    _, _, s, a = _gaussian_stats(W, b)
    log_q, _, _, _, j2 = _scaled_moments(a)
    return _expand(s * s * torch.exp(log_q + torch.log(j2)), _t(V).shape)


def h_w(V, W, b) -> Tensor:
    """``h_w = E_x[(∇_W f)²] = V² E[x_j² σ'(z)] = V² [Φ(a) − (W_j/s)² a φ(a)]``, ``a = b/s``.

    Args:
        V: outgoing weight, ``(...)``.
        W: incoming weights, ``(..., M)``.
        b: bias, ``(...)``.

    Returns:
        ``(..., M)``, one entry per input coordinate ``j``.
    """
    _check_shapes(V=V, W=W, b=b)
    W, _, s, a = _gaussian_stats(W, b)
    V = _t(V)
    log_q, log_pdf, j0, _, _ = _scaled_moments(a)
    c2 = (W / s.unsqueeze(-1)) ** 2
    # Φ(a) − c2 a φ(a) = q [J0 − c2 a φ(a)/q]: both terms ≥ 0 for a < 0, and
    # J0 ≥ 1/2 > c2 a φ(a) for a ≥ 0, so no cancellation anywhere.
    inner = j0.unsqueeze(-1) - c2 * (a * torch.exp(log_pdf - log_q)).unsqueeze(-1)
    return (V * V).unsqueeze(-1) * torch.exp(log_q.unsqueeze(-1) + torch.log(inner))


def h_b(V, W, b) -> Tensor:
    """``h_b = E_x[(∇_b f)²] = V² Φ(b/s)``.

    Args:
        V: outgoing weight, ``(...)``.
        W: incoming weights, ``(..., M)``.
        b: bias, ``(...)``.

    Returns:
        ``(...)``.
    """
    _check_shapes(V=V, W=W, b=b)
    V = _t(V)
    return V * V * activation_rate(W, b)


# --------------------------------------------------------------------------
# φ1, φ2, ψ and J_t
# --------------------------------------------------------------------------


def phi1(W, b, err2) -> Tensor:
    """``φ1 = sqrt(E[(p − y)² σ(z)²]) = sqrt(err2 · E σ(z)²)`` (Eq. 23–24).

    Args:
        W: incoming weights, ``(..., M)``.
        b: bias, ``(...)``.
        err2: ``E[(p − y)²]``, float or ``(...)`` (independence assumption).

    Returns:
        ``(...)``.
    """
    _check_shapes(W=W, b=b, err2=err2)
    _, _, s, a = _gaussian_stats(W, b)
    log_q, _, _, _, j2 = _scaled_moments(a)
    return torch.sqrt(_t(err2)) * s * torch.exp(0.5 * log_q) * torch.sqrt(j2)


def phi2(W, b, err2) -> Tensor:
    """``φ2 = sqrt(E[(p − y)² σ'(z)]) = sqrt(err2 · Φ(b/s))`` (Eq. 25–26, ``g_b = V φ2/√|B|``).

    Args:
        W: incoming weights, ``(..., M)``.
        b: bias, ``(...)``.
        err2: ``E[(p − y)²]``, float or ``(...)``.

    Returns:
        ``(...)``.
    """
    _check_shapes(W=W, b=b, err2=err2)
    _, _, _, a = _gaussian_stats(W, b)
    return torch.sqrt(_t(err2)) * torch.exp(0.5 * torch.special.log_ndtr(a))  # no underflow of Φ


def dphi1_db(W, b, err2) -> Tensor:
    """``∂_b φ1 = err2 · E σ(z) / φ1 = err2 (b Φ(a) + s φ(a)) / φ1`` (closed form).

    Uses ``∂_b E σ(z)² = 2 E σ(z)``; in scaled moments ``∂_b φ1 = sqrt(err2) M1/sqrt(M2)``.

    Returns:
        ``(...)``, same broadcasting as :func:`phi1`.
    """
    _check_shapes(W=W, b=b, err2=err2)
    _, _, _, a = _gaussian_stats(W, b)
    log_q, _, _, j1, j2 = _scaled_moments(a)
    return torch.sqrt(_t(err2)) * torch.exp(0.5 * log_q) * j1 / torch.sqrt(j2)


def dphi2_db(W, b, err2) -> Tensor:
    """``∂_b φ2 = err2 · φ(a) / (2 s φ2)`` (closed form, ``∂_b Φ(b/s) = φ(a)/s``).

    Returns:
        ``(...)``, same broadcasting as :func:`phi2`.
    """
    _check_shapes(W=W, b=b, err2=err2)
    _, _, s, a = _gaussian_stats(W, b)
    # φ(a)/√Φ(a) in logs: both factors underflow far in the lower tail.
    log_ratio = -0.5 * a * a + _LOG_INV_SQRT_2PI - 0.5 * torch.special.log_ndtr(a)
    return torch.sqrt(_t(err2)) * torch.exp(log_ratio) / (2.0 * s)


def psi(V, W, b, err2, rho=1.0) -> Tensor:
    """Thermophoretic flow coefficient ψ of Eq. 27, ``J_t = η²/|B| · ψ``.

    Implements the formula as printed (A.7 Eq. 38 of the long version; Eq. 27
    of the short one is garbled)::

        ψ = (V φ1 φ2² + V φ1 φ2 ∂_b φ1 + V³ φ2² ∂_b φ2) / (2 sqrt(φ1² + V² φ2²)) · ρ

    which is Eq. 11's ``Σ_ij g_i g_j ∂_j g_i / (2 sqrt(Σ g_i²))`` over
    ``U = {V, b}`` with ``g_V = φ1/√|B|`` and ``g_b = V φ2/√|B|``.

    Ambiguities of the paper, kept as printed:

    * Eq. 10 (and its derivation in A.3) has no factor 1/2 in the
      thermophoretic term, Eq. 11 and ψ have it: ψ is half of Eq. 10's term.
    * ψ is odd in ``V``. For ``V ≥ 0`` every term is ``≥ 0`` and ψ is the flow
      towards smaller ``V`` and ``b``. For ``V < 0`` the paper maps
      ``V → −V``; in those coordinates the flow is ``ψ(|V|) ≥ 0`` towards
      larger ``V`` (smaller ``V²``) and smaller ``b``, whereas the printed ψ
      is negative. Use ``psi(abs(V), ...)`` for the magnitude.
    * ``ρ`` (the parameter density) is not specified; it is a plain factor.

    Args:
        V: outgoing weight, ``(...)``.
        W: incoming weights, ``(..., M)``.
        b: bias, ``(...)``.
        err2: ``E[(p − y)²]``, float or ``(...)``.
        rho: density ``ρ`` at ``(V, W, b)``, float or ``(...)``; 1 by default.

    Returns:
        ``(...)``. Proportional to ``err2`` (ψ = err2 · ψ|_{err2=1}).
    """
    _check_shapes(V=V, W=W, b=b, err2=err2, rho=rho)
    _, _, s, a = _gaussian_stats(W, b)
    V = _t(V)
    log_q, log_pdf, j0, j1, j2 = _scaled_moments(a)
    # Substituting φ1 = √err2 s √M2, φ2 = √err2 √M0, ∂_b φ1 = √err2 M1/√M2,
    # ∂_b φ2 = √err2 φ(a)/(2 s √M0) and M_k = q J_k, the printed formula is
    #   ψ = err2 ρ V q [s √J2 J0 + s √J0 J1 + V² (φ(a)/q) √J0/(2s)] / (2 sqrt(s² J2 + V² J0)),
    # whose bracket and root are positive: q stays in logs, so ψ keeps its
    # relative precision until ψ itself underflows, and err2 = 0 needs no 0/0 guard.
    sqrt_j0 = torch.sqrt(j0)
    bracket = s * torch.sqrt(j2) * j0 + s * sqrt_j0 * j1 + V * V * torch.exp(log_pdf - log_q) * sqrt_j0 / (2.0 * s)
    root = 2.0 * torch.sqrt(s * s * j2 + V * V * j0)
    return _t(err2) * _t(rho) * V * torch.exp(log_q + torch.log(bracket) - torch.log(root))


def thermophoretic_flow(V, W, b, err2, lr, batch_size, rho=1.0) -> Tensor:
    """``J_t = η²/|B| · ψ`` (Eq. 27) for Gaussian inputs.

    Args:
        V, W, b, err2, rho: as in :func:`psi`.
        lr: learning rate ``η``, float or broadcastable tensor.
        batch_size: ``|B|``, float or broadcastable tensor.

    Returns:
        ``(...)`` flow density (per step, in parameter units times ``ρ``).
    """
    _check_shapes(V=V, W=W, b=b, err2=err2, rho=rho, lr=lr, batch_size=batch_size)
    return _t(lr) ** 2 / _t(batch_size) * psi(V, W, b, err2, rho)
