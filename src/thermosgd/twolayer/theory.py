"""Theory of the two-layer model: h functions, φ1, φ2, ψ and J_t (Sec. 4–5, Eq. 23–27).

One hidden unit is described by its outgoing weight ``V``, incoming weights
``W`` and bias ``b``; its pre-activation is ``z = W·x + b`` and ``σ`` is ReLU.
Everything here is per unit (the paper drops the unit index ``i``).

Two families of functions:

* closed forms for Gaussian inputs ``x ~ N(0, I_M)``, where ``z ~ N(b, s²)``
  with ``s = ‖W‖`` (``s > 0`` is required; ``W = 0`` gives NaN or a step);
* ``*_mc`` Monte Carlo versions averaging over an explicit sample of inputs
  ``x: (n, M)`` from any distribution (see :func:`sample_inputs`).

All functions take float or tensor arguments, compute in float64 with torch
(so autograd works) and broadcast over leading dims: ``V: (...)``,
``W: (..., M)``, ``b: (...)``, result ``(...)`` (``h_w``: ``(..., M)``).

The loss-residual factor ``(p − y)²`` of Eq. 23 and 25 enters through
``err2``: a float ``E[(p − y)²]`` under the paper's assumption (Sec. 5) that
``p − y`` is independent of ``∇f`` early in training (``err2 = 1/4`` at
initialization with balanced random labels and ``p ≈ 1/2``), or, for the Monte
Carlo versions only, per-sample squared residuals ``(p_k − y_k)²`` of shape
``(n,)`` paired with the rows of ``x``, which drops the assumption.

Closed forms used (``a = b/s``, ``Φ``/``φ`` the standard normal cdf/pdf,
``u = (z − b)/s ~ N(0, 1)``):

* ``E σ'(z) = Φ(a)``,
* ``E σ(z)² = (b² + s²) Φ(a) + b s φ(a)``,
* ``E[x_j² σ'(z)] = Φ(a) − (W_j/s)² a φ(a)``. Given ``u``, ``x_j`` is Gaussian
  with mean ``(W_j/s) u`` and variance ``1 − (W_j/s)²``, so
  ``E[x_j² | u] = 1 + (W_j/s)² (u² − 1)``; with ``E[1{u > −a}] = Φ(a)`` and
  ``E[u² 1{u > −a}] = Φ(a) − a φ(a)`` this gives the formula.
"""

from __future__ import annotations

import math

import torch

Tensor = torch.Tensor
_DTYPE = torch.float64
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

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
    "sample_inputs",
    "activation_rate_mc",
    "h_v_mc",
    "h_w_mc",
    "h_b_mc",
    "phi1_mc",
    "phi2_mc",
    "psi_mc",
]


def _t(value) -> Tensor:
    if isinstance(value, Tensor):
        return value.to(_DTYPE)
    return torch.as_tensor(value, dtype=_DTYPE)


def _pdf(a: Tensor) -> Tensor:
    return torch.exp(-0.5 * a * a) * _INV_SQRT_2PI


def _gaussian_stats(W, b) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Return ``(W, b, s, a)`` as float64 tensors, ``s = ‖W‖``, ``a = b/s``."""
    W, b = _t(W), _t(b)
    s = torch.linalg.vector_norm(W, dim=-1)
    return W, b, s, b / s


def _expand(value: Tensor, *shapes) -> Tensor:
    return value.expand(torch.broadcast_shapes(value.shape, *shapes))


# --------------------------------------------------------------------------
# Closed forms for x ~ N(0, I)
# --------------------------------------------------------------------------


def activation_rate(W, b) -> Tensor:
    """Probability that the unit is active, ``E σ'(z) = Φ(b/‖W‖)`` (Eq. 14, one unit).

    Args:
        W: incoming weights, ``(..., M)``.
        b: bias, ``(...)``.

    Returns:
        ``(...)`` activation probability in ``[0, 1]``.
    """
    _, _, _, a = _gaussian_stats(W, b)
    return torch.special.ndtr(a)


def _second_moment_relu(b: Tensor, s: Tensor, a: Tensor) -> Tensor:
    """``E σ(z)²`` for ``z ~ N(b, s²)``: ``s² [(1 + a²) Φ(a) + a φ(a)]``.

    For ``a < 0`` the two terms nearly cancel (the result decays like
    ``2 s² φ(a)/|a|³``), so there it is computed as ``s² φ(a) [(1 + a²) R(a) + a]``
    with the Mills ratio ``R(a) = Φ(a)/φ(a) = √(π/2) erfcx(−a/√2)``, which keeps
    it positive and accurate far into the tail.
    """
    direct = (b * b + s * s) * torch.special.ndtr(a) + b * s * _pdf(a)
    neg = torch.clamp(a, max=0.0)  # keep the unused branch finite for autograd
    mills = math.sqrt(math.pi / 2) * torch.special.erfcx(-neg / math.sqrt(2))
    tail = s * s * _pdf(neg) * ((1 + neg * neg) * mills + neg)
    return torch.where(a < 0, tail, direct).clamp_min(0.0)


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
    W, b, s, a = _gaussian_stats(W, b)
    return _expand(_second_moment_relu(b, s, a), _t(V).shape)


def h_w(V, W, b) -> Tensor:
    """``h_w = E_x[(∇_W f)²] = V² E[x_j² σ'(z)] = V² [Φ(a) − (W_j/s)² a φ(a)]``, ``a = b/s``.

    Args:
        V: outgoing weight, ``(...)``.
        W: incoming weights, ``(..., M)``.
        b: bias, ``(...)``.

    Returns:
        ``(..., M)``, one entry per input coordinate ``j``.
    """
    W, b, s, a = _gaussian_stats(W, b)
    V = _t(V)
    c2 = (W / s.unsqueeze(-1)) ** 2
    inner = torch.special.ndtr(a).unsqueeze(-1) - c2 * (a * _pdf(a)).unsqueeze(-1)
    return (V * V).unsqueeze(-1) * inner


def h_b(V, W, b) -> Tensor:
    """``h_b = E_x[(∇_b f)²] = V² Φ(b/s)``.

    Args:
        V: outgoing weight, ``(...)``.
        W: incoming weights, ``(..., M)``.
        b: bias, ``(...)``.

    Returns:
        ``(...)``.
    """
    V = _t(V)
    return V * V * activation_rate(W, b)


def phi1(W, b, err2) -> Tensor:
    """``φ1 = sqrt(E[(p − y)² σ(z)²]) = sqrt(err2 · E σ(z)²)`` (Eq. 23–24).

    Args:
        W: incoming weights, ``(..., M)``.
        b: bias, ``(...)``.
        err2: ``E[(p − y)²]``, float or ``(...)`` (independence assumption).

    Returns:
        ``(...)``.
    """
    W, b, s, a = _gaussian_stats(W, b)
    return torch.sqrt(_t(err2) * _second_moment_relu(b, s, a))


def phi2(W, b, err2) -> Tensor:
    """``φ2 = sqrt(E[(p − y)² σ'(z)]) = sqrt(err2 · Φ(b/s))`` (Eq. 25–26, ``g_b = V φ2/√|B|``).

    Args:
        W: incoming weights, ``(..., M)``.
        b: bias, ``(...)``.
        err2: ``E[(p − y)²]``, float or ``(...)``.

    Returns:
        ``(...)``.
    """
    W, b, s, a = _gaussian_stats(W, b)
    return torch.sqrt(_t(err2)) * torch.exp(0.5 * torch.special.log_ndtr(a))  # no underflow of Φ


def dphi1_db(W, b, err2) -> Tensor:
    """``∂_b φ1 = err2 · E σ(z) / φ1 = err2 (b Φ(a) + s φ(a)) / φ1`` (closed form).

    Uses ``∂_b E σ(z)² = 2 E σ(z)`` and ``E σ(z) = b Φ(a) + s φ(a)``.

    Returns:
        ``(...)``, same broadcasting as :func:`phi1`.
    """
    W, b, s, a = _gaussian_stats(W, b)
    err2 = _t(err2)
    mean_relu = b * torch.special.ndtr(a) + s * _pdf(a)
    return err2 * mean_relu / torch.sqrt(err2 * _second_moment_relu(b, s, a))


def dphi2_db(W, b, err2) -> Tensor:
    """``∂_b φ2 = err2 · φ(a) / (2 s φ2)`` (closed form, ``∂_b Φ(b/s) = φ(a)/s``).

    Returns:
        ``(...)``, same broadcasting as :func:`phi2`.
    """
    W, b, s, a = _gaussian_stats(W, b)
    err2 = _t(err2)
    # φ(a)/√Φ(a) in logs: both factors underflow far in the lower tail.
    log_ratio = -0.5 * a * a + math.log(_INV_SQRT_2PI) - 0.5 * torch.special.log_ndtr(a)
    return torch.sqrt(err2) * torch.exp(log_ratio) / (2.0 * s)


def _psi_formula(V, p1, p2, dp1, dp2, rho) -> Tensor:
    """The printed ψ (A.7 Eq. 38 of the long version; Eq. 27 here is garbled)."""
    V = _t(V)
    numerator = V * p1 * p2**2 + V * p1 * p2 * dp1 + V**3 * p2**2 * dp2
    norm = torch.sqrt(p1**2 + V**2 * p2**2)
    # No gradient noise in U (g = 0): no walk and no flow; avoid 0/0.
    safe = torch.where(norm > 0, norm, torch.ones_like(norm))
    return torch.where(norm > 0, numerator / (2.0 * safe), torch.zeros_like(norm)) * _t(rho)


def psi(V, W, b, err2, rho=1.0) -> Tensor:
    """Thermophoretic flow coefficient ψ of Eq. 27, ``J_t = η²/|B| · ψ``.

    Implements the formula as printed::

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
    return _psi_formula(
        V, phi1(W, b, err2), phi2(W, b, err2), dphi1_db(W, b, err2), dphi2_db(W, b, err2), rho
    )


def thermophoretic_flow(V, W, b, err2, lr, batch_size, rho=1.0) -> Tensor:
    """``J_t = η²/|B| · ψ`` (Eq. 27) for Gaussian inputs.

    Args:
        V, W, b, err2, rho: as in :func:`psi`.
        lr: learning rate ``η``, float or broadcastable tensor.
        batch_size: ``|B|``, float or broadcastable tensor.

    Returns:
        ``(...)`` flow density (per step, in parameter units times ``ρ``).
    """
    return _t(lr) ** 2 / _t(batch_size) * psi(V, W, b, err2, rho)


# --------------------------------------------------------------------------
# Monte Carlo over an explicit input sample
# --------------------------------------------------------------------------


def sample_inputs(n: int, M: int, dist: str = "gaussian", seed: int = 0) -> Tensor:
    """Draw ``n`` inputs for the Monte Carlo functions.

    Args:
        n: number of samples.
        M: input dimension.
        dist: ``"gaussian"`` (``N(0, I)``) or ``"uniform"`` (``U(0, 1)^M``, the
            non-negative inputs of Property 4.2).
        seed: seed of a private ``torch.Generator`` (no global state touched).

    Returns:
        ``(n, M)`` float64 tensor.
    """
    gen = torch.Generator().manual_seed(seed)
    if dist == "gaussian":
        return torch.randn(n, M, generator=gen, dtype=_DTYPE)
    if dist == "uniform":
        return torch.rand(n, M, generator=gen, dtype=_DTYPE)
    raise ValueError(f"unknown input distribution {dist!r} (expected 'gaussian' or 'uniform')")


def _pre_activation(W, b, x) -> Tensor:
    """``z = W·x + b`` for every sample: ``(..., n)``."""
    W, b, x = _t(W), _t(b), _t(x)
    return torch.einsum("...m,nm->...n", W, x) + b.unsqueeze(-1)


def activation_rate_mc(W, b, x) -> Tensor:
    """Monte Carlo ``E_x σ'(z)`` (σ'(0) = 0, as in PyTorch).

    Args:
        W: ``(..., M)``. b: ``(...)``. x: input sample ``(n, M)``.

    Returns:
        ``(...)``.
    """
    return (_pre_activation(W, b, x) > 0).to(_DTYPE).mean(-1)


def h_v_mc(V, W, b, x) -> Tensor:
    """Monte Carlo ``h_v = E_x σ(z)²``. Shapes as :func:`h_v`, ``x: (n, M)``."""
    out = torch.relu(_pre_activation(W, b, x)).pow(2).mean(-1)
    return _expand(out, _t(V).shape)


def h_w_mc(V, W, b, x) -> Tensor:
    """Monte Carlo ``h_w = V² E_x[x_j² σ'(z)]``, ``(..., M)``. ``x: (n, M)``."""
    x = _t(x)
    active = (_pre_activation(W, b, x) > 0).to(_DTYPE)
    inner = torch.einsum("...n,nm->...m", active, x * x) / x.shape[0]
    V = _t(V)
    return (V * V).unsqueeze(-1) * inner


def h_b_mc(V, W, b, x) -> Tensor:
    """Monte Carlo ``h_b = V² E_x σ'(z)``, ``(...)``. ``x: (n, M)``."""
    V = _t(V)
    return V * V * activation_rate_mc(W, b, x)


def phi1_mc(W, b, x, err2) -> Tensor:
    """Monte Carlo ``φ1 = sqrt(E[(p − y)² σ(z)²])`` (Eq. 23).

    Args:
        W: ``(..., M)``. b: ``(...)``. x: ``(n, M)``.
        err2: float ``E[(p − y)²]`` (independence) or per-sample ``(p_k − y_k)²``, ``(n,)``.

    Returns:
        ``(...)``.
    """
    z = _pre_activation(W, b, x)
    return torch.sqrt((_t(err2) * torch.relu(z).pow(2)).mean(-1))


def phi2_mc(W, b, x, err2) -> Tensor:
    """Monte Carlo ``φ2 = sqrt(E[(p − y)² σ'(z)])`` (Eq. 25–26). Arguments as :func:`phi1_mc`."""
    z = _pre_activation(W, b, x)
    return torch.sqrt((_t(err2) * (z > 0).to(_DTYPE)).mean(-1))


def psi_mc(V, W, b, x, err2, rho=1.0, bandwidth=None) -> Tensor:
    """Monte Carlo ψ (same printed formula and caveats as :func:`psi`).

    ``∂_b φ1`` is exact path-wise (``∂_b E[r² σ(z)²] = E[2 r² σ(z)]``). ``∂_b φ2``
    needs the density of ``z`` at 0 (``σ'`` is a step, so autograd through the
    sample gives 0): it is estimated with a Gaussian kernel,
    ``∂_b E[r² σ'(z)] ≈ E[r² K_h(z)]``, bias ``O(h²)``.

    Args:
        V: ``(...)``. W: ``(..., M)``. b: ``(...)``. x: ``(n, M)``.
        err2: float or per-sample ``(n,)``, as in :func:`phi1_mc`.
        rho: density factor, float or ``(...)``.
        bandwidth: kernel width ``h`` in units of ``z``; default Silverman's
            rule ``1.06 · std(z) · n^(−1/5)`` per unit.

    Returns:
        ``(...)``.
    """
    z = _pre_activation(W, b, x)
    r2 = _t(err2)
    n = z.shape[-1]
    m1 = (r2 * torch.relu(z).pow(2)).mean(-1)
    m2 = (r2 * (z > 0).to(_DTYPE)).mean(-1)
    p1, p2 = torch.sqrt(m1), torch.sqrt(m2)
    dm1 = (2.0 * r2 * torch.relu(z)).mean(-1)
    h = 1.06 * z.std(-1) * n ** (-0.2) if bandwidth is None else _t(bandwidth)
    h = h.unsqueeze(-1) if h.ndim else h
    dm2 = (r2 * torch.exp(-0.5 * (z / h) ** 2) * _INV_SQRT_2PI / h).mean(-1)
    return _psi_formula(V, p1, p2, dm1 / (2.0 * p1), dm2 / (2.0 * p2), rho)
