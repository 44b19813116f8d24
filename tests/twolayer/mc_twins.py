"""Monte Carlo twins of ``thermosgd.twolayer.theory``: the same expectations as
plain averages over an explicit input sample ``x: (n, M)`` from any distribution.

Shapes as in the module: ``V: (...)``, ``W: (..., M)``, ``b: (...)``, result
``(...)`` (``h_w_mc``: ``(..., M)``). ``err2`` is a float ``E[(p − y)²]``
(the independence assumption) or per-sample ``(p_k − y_k)²`` of shape ``(n,)``
paired with the rows of ``x``, which drops the assumption.
"""

from __future__ import annotations

import math

import torch

Tensor = torch.Tensor
DT = torch.float64
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _t(value) -> Tensor:
    return value.to(DT) if isinstance(value, Tensor) else torch.as_tensor(value, dtype=DT)


def _expand(value: Tensor, *shapes) -> Tensor:
    return value.expand(torch.broadcast_shapes(value.shape, *shapes))


def sample_inputs(n: int, M: int, dist: str = "gaussian", seed: int = 0) -> Tensor:
    """``(n, M)`` float64 inputs: ``"gaussian"`` (``N(0, I)``) or ``"uniform"``
    (``U(0, 1)^M``, the non-negative inputs of Property 4.2), from a private
    ``torch.Generator`` seeded with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    if dist == "gaussian":
        return torch.randn(n, M, generator=gen, dtype=DT)
    if dist == "uniform":
        return torch.rand(n, M, generator=gen, dtype=DT)
    raise ValueError(f"unknown input distribution {dist!r} (expected 'gaussian' or 'uniform')")


def _pre_activation(W, b, x) -> Tensor:
    """``z = W·x + b`` for every sample: ``(..., n)``."""
    W, b, x = _t(W), _t(b), _t(x)
    return torch.einsum("...m,nm->...n", W, x) + b.unsqueeze(-1)


def activation_rate_mc(W, b, x) -> Tensor:
    """``E_x σ'(z)`` (σ'(0) = 0, as in PyTorch), ``(...)``."""
    return (_pre_activation(W, b, x) > 0).to(DT).mean(-1)


def h_v_mc(V, W, b, x) -> Tensor:
    """``h_v = E_x σ(z)²``, ``(...)``."""
    out = torch.relu(_pre_activation(W, b, x)).pow(2).mean(-1)
    return _expand(out, _t(V).shape)


def h_w_mc(V, W, b, x) -> Tensor:
    """``h_w = V² E_x[x_j² σ'(z)]``, ``(..., M)``."""
    x = _t(x)
    active = (_pre_activation(W, b, x) > 0).to(DT)
    inner = torch.einsum("...n,nm->...m", active, x * x) / x.shape[0]
    V = _t(V)
    return (V * V).unsqueeze(-1) * inner


def h_b_mc(V, W, b, x) -> Tensor:
    """``h_b = V² E_x σ'(z)``, ``(...)``."""
    V = _t(V)
    return V * V * activation_rate_mc(W, b, x)


def phi1_mc(W, b, x, err2) -> Tensor:
    """``φ1 = sqrt(E[(p − y)² σ(z)²])`` (Eq. 23), ``(...)``."""
    z = _pre_activation(W, b, x)
    return torch.sqrt((_t(err2) * torch.relu(z).pow(2)).mean(-1))


def phi2_mc(W, b, x, err2) -> Tensor:
    """``φ2 = sqrt(E[(p − y)² σ'(z)])`` (Eq. 25–26), ``(...)``."""
    z = _pre_activation(W, b, x)
    return torch.sqrt((_t(err2) * (z > 0).to(DT)).mean(-1))


def psi_printed(V, p1, p2, dp1, dp2, rho) -> Tensor:
    """ψ exactly as printed (A.7 Eq. 38): ``(V φ1 φ2² + V φ1 φ2 ∂_bφ1 + V³ φ2² ∂_bφ2) / (2 sqrt(φ1² + V² φ2²)) · ρ``."""
    V = _t(V)
    numerator = V * p1 * p2**2 + V * p1 * p2 * dp1 + V**3 * p2**2 * dp2
    norm = torch.sqrt(p1**2 + V**2 * p2**2)
    # No gradient noise in U (g = 0): no walk and no flow; avoid 0/0.
    safe = torch.where(norm > 0, norm, torch.ones_like(norm))
    return torch.where(norm > 0, numerator / (2.0 * safe), torch.zeros_like(norm)) * _t(rho)


def psi_mc(V, W, b, x, err2, rho=1.0, bandwidth=None) -> Tensor:
    """Monte Carlo ψ (the printed formula, see :func:`thermosgd.twolayer.theory.psi`).

    ``∂_b φ1`` is exact path-wise (``∂_b E[r² σ(z)²] = E[2 r² σ(z)]``). ``∂_b φ2``
    needs the density of ``z`` at 0 (``σ'`` is a step, so autograd through the
    sample gives 0): it is estimated with a Gaussian kernel,
    ``∂_b E[r² σ'(z)] ≈ E[r² K_h(z)]``, bias ``O(h²)``; ``bandwidth`` ``h`` in
    units of ``z``, default Silverman's rule ``1.06 · std(z) · n^(−1/5)`` per unit.
    """
    z = _pre_activation(W, b, x)
    r2 = _t(err2)
    n = z.shape[-1]
    m1 = (r2 * torch.relu(z).pow(2)).mean(-1)
    m2 = (r2 * (z > 0).to(DT)).mean(-1)
    p1, p2 = torch.sqrt(m1), torch.sqrt(m2)
    dm1 = (2.0 * r2 * torch.relu(z)).mean(-1)
    h = 1.06 * z.std(-1) * n ** (-0.2) if bandwidth is None else _t(bandwidth)
    h = h.unsqueeze(-1) if h.ndim else h
    dm2 = (r2 * torch.exp(-0.5 * (z / h) ** 2) * _INV_SQRT_2PI / h).mean(-1)
    return psi_printed(V, p1, p2, dm1 / (2.0 * p1), dm2 / (2.0 * p2), rho)
