"""Theory of the walk for any g, derivatives by autograd.

Exactly as printed in the paper (Sec. 3 and Appendix A.2-A.4):

* Eq. 9  :func:`delta_difference`   Delta+ - Delta- = 2 eta^2 sum_j g_j d_j g_i
* Eq. 10 :func:`flux`               J = -eta^2 |g| sum_i g_i d_i rho  -  eta^2 (sum_ij g_i g_j d_j g_i / |g|) rho
* Eq. 11 :func:`soret_coefficient`  c = -eta^2 sum_ij g_i g_j d_j g_i / (2 |g|)
* Eq. 34 :func:`soret_coefficient_1d` c = eta^2 g g' / 2  (|U| = 1), Eq. 35 T = (eta g / 2)^2

(sums over the set U of coordinates that share one zeta; |g| is the norm of g on U).

Two remarks on the printed equations, kept as printed:

* Eq. 11 carries a factor 1/2 relative to the thermophoretic term of Eq. 10
  (c rho is half that term), and Eq. 34 has the opposite sign of Eq. 11 reduced
  to |U| = 1 (Eq. 11 gives -eta^2 g g' / 2 for g > 0).
* Setting Eq. 10 to zero in one dimension gives rho ∝ g^-1 (:func:`soret_equilibrium`).

Beside the paper we offer, clearly labelled, the Fokker-Planck (Ito) limit of
the same walk, :func:`flux_fokker_planck`: a jump of covariance eta^2 g g^T taken
from the departure point gives ``J_i = -1/2 eta^2 sum_j d_j (g_i g_j rho)``. In
one dimension it has the same thermophoretic term as Eq. 10, half its diffusion
term, and the zero-flux density rho ∝ g^-2.

Every ``g`` here maps positions ``(N, D)`` to ``(N, D)`` row by row (particle n's
g depends on q[n] only), which lets one backward pass per coordinate give the
whole Jacobian.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from thermosgd.errors import UsageError
from thermosgd.walk.simulate import as_field

__all__ = [
    "Flux",
    "jacobian",
    "delta_difference",
    "flux",
    "flux_fokker_planck",
    "soret_coefficient",
    "soret_coefficient_1d",
    "effective_temperature",
    "soret_equilibrium",
    "stationary_exponent",
]

GFunction = Callable[[torch.Tensor], torch.Tensor]


class Flux(NamedTuple):
    """A probability flux split into its two parts (same shape each)."""

    diffusion: torch.Tensor
    thermophoretic: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        return self.diffusion + self.thermophoretic


def _points(q) -> torch.Tensor:
    q = torch.as_tensor(q)
    if not q.is_floating_point():
        q = q.to(torch.get_default_dtype())
    return q.reshape(-1, 1) if q.dim() <= 1 else q


def jacobian(g: GFunction, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """g and its Jacobian at many points.

    Args:
        g: Row-wise function ``(N, D) -> (N, D)`` (or ``(N,)``, shared by all coordinates).
        q: Points ``(N, D)`` (or ``(N,)`` for D = 1).

    Returns:
        ``(g, jac)`` with shapes ``(N, D)`` and ``(N, D, D)``, ``jac[n, i, j] = d_j g_i(q_n)``.
    """
    q = _points(q).detach().clone().requires_grad_(True)
    with torch.enable_grad():
        gq = as_field(g(q), q)
        rows = [
            torch.autograd.grad(gq[:, i].sum(), q, retain_graph=True, allow_unused=True)[0] for i in range(q.shape[1])
        ]
    rows = [torch.zeros_like(q) if r is None else r for r in rows]
    return gq.detach(), torch.stack(rows, dim=1).detach()


def _subset(U: Sequence[int] | None, dim: int) -> list[int]:
    U = list(range(dim)) if U is None else [int(i) for i in U]
    if not U or any(not 0 <= i < dim for i in U) or len(set(U)) != len(U):
        raise UsageError(f"U must be distinct coordinate indices in [0, {dim}), got {U}")
    return U


def _u_parts(g, q, U):
    gq, jac = jacobian(g, q)
    U = _subset(U, gq.shape[1])
    gu = gq[:, U]  # (N, |U|)
    ju = jac[:, U][:, :, U]  # (N, |U|, |U|), ju[n, i, j] = d_j g_i
    # sum_{i,j in U} g_i g_j d_j g_i
    s = torch.einsum("ni,nj,nij->n", gu, gu, ju)
    return gu, ju, s, U


def delta_difference(g: GFunction, q: torch.Tensor, eta: float, *, U: Sequence[int] | None = None) -> torch.Tensor:
    """Eq. 9: ``Delta_i^+ - Delta_i^- = 2 eta^2 sum_{j in U} g_j d_j g_i`` (to O(eta^3)).

    Args:
        g: Noise amplitude, row-wise ``(N, D) -> (N, D)``.
        q: Points ``(N, D)``.
        eta: Step size.
        U: Coordinates sharing one zeta (default: all).

    Returns:
        ``(N, |U|)``, same units as q.
    """
    gu, ju, _, _ = _u_parts(g, q, U)
    return 2 * eta**2 * torch.einsum("nj,nij->ni", gu, ju)


def flux(
    g: GFunction,
    q: torch.Tensor,
    rho: torch.Tensor,
    grad_rho: torch.Tensor,
    eta: float,
    *,
    U: Sequence[int] | None = None,
) -> Flux:
    """Eq. 10 as printed: the probability flux through q along U, per step.

    ``diffusion = -eta^2 |g_U| sum_{i in U} g_i d_i rho`` and
    ``thermophoretic = -eta^2 (sum_{i,j in U} g_i g_j d_j g_i / |g_U|) rho``.

    Args:
        g: Noise amplitude, row-wise ``(N, D) -> (N, D)``.
        q: Points ``(N, D)``.
        rho: Density at q, ``(N,)`` (probability per unit volume).
        grad_rho: Its gradient, ``(N, D)``.
        eta: Step size.
        U: Coordinates sharing one zeta (default: all).

    Returns:
        :class:`Flux` of ``(N,)`` tensors: probability per step per unit area,
        positive along +g.
    """
    gu, _, s, U = _u_parts(g, q, U)
    rho = torch.as_tensor(rho, dtype=gu.dtype).reshape(-1)
    grad = _points(torch.as_tensor(grad_rho, dtype=gu.dtype))[:, U]
    norm = torch.linalg.vector_norm(gu, dim=1)
    diffusion = -(eta**2) * norm * (gu * grad).sum(1)
    thermo = -(eta**2) * s / norm * rho
    return Flux(diffusion, thermo)


def flux_fokker_planck(
    g: GFunction,
    q: torch.Tensor,
    rho: torch.Tensor,
    grad_rho: torch.Tensor,
    eta: float,
    *,
    shared: bool = True,
) -> Flux:
    """Fokker-Planck (Ito) flux vector of the walk, not from the paper.

    The jump ``-eta g(q) zeta`` taken at the departure point has covariance
    ``eta^2 D`` with ``D = g g^T`` (shared zeta) or ``diag(g^2)`` (independent),
    so ``J_i = -1/2 eta^2 sum_j d_j (D_ij rho)``, split into
    ``diffusion_i = -1/2 eta^2 sum_j D_ij d_j rho`` and
    ``thermophoretic_i = -1/2 eta^2 (sum_j d_j D_ij) rho``.

    Args:
        g, q, rho, grad_rho, eta: As in :func:`flux`.
        shared: Whether all coordinates share one zeta.

    Returns:
        :class:`Flux` of ``(N, D)`` vectors (probability per step per unit area).
    """
    gq, jac = jacobian(g, q)
    rho = torch.as_tensor(rho, dtype=gq.dtype).reshape(-1)
    grad = _points(torch.as_tensor(grad_rho, dtype=gq.dtype))
    if shared:
        dg = torch.einsum("nij,nj->ni", jac, gq)  # (g . grad) g_i
        div = torch.einsum("njj->n", jac)
        divD = dg + gq * div[:, None]
        diffusion = -0.5 * eta**2 * gq * (gq * grad).sum(1, keepdim=True)
    else:
        diag = torch.diagonal(jac, dim1=1, dim2=2)
        divD = 2 * gq * diag
        diffusion = -0.5 * eta**2 * gq**2 * grad
    return Flux(diffusion, -0.5 * eta**2 * divD * rho[:, None])


def soret_coefficient(g: GFunction, q: torch.Tensor, eta: float, *, U: Sequence[int] | None = None) -> torch.Tensor:
    """Eq. 11 as printed: ``c = -eta^2 sum_{i,j in U} g_i g_j d_j g_i / (2 |g_U|)``, ``(N,)``.

    Note the factor 1/2: ``c rho`` is half the thermophoretic term of Eq. 10.
    """
    gu, _, s, _ = _u_parts(g, q, U)
    return -(eta**2) * s / (2 * torch.linalg.vector_norm(gu, dim=1))


def soret_coefficient_1d(g: GFunction, q: torch.Tensor, eta: float) -> torch.Tensor:
    """Eq. 34 as printed (|U| = 1, g = g(q)): ``c = eta^2 g g' / 2``, ``(N,)``.

    Note the sign: Eq. 11 reduced to one coordinate gives ``-eta^2 g g' / 2`` for g > 0.
    """
    gq, jac = jacobian(g, q)
    if gq.shape[1] != 1:
        raise UsageError("Eq. 34 is for one coordinate; use soret_coefficient for D > 1")
    return eta**2 * gq[:, 0] * jac[:, 0, 0] / 2


def effective_temperature(g: GFunction, q: torch.Tensor, eta: float) -> torch.Tensor:
    """Eq. 35: the effective temperature ``T = (eta g / 2)^2`` whose derivative is Eq. 34, ``(N, D)``."""
    gq, _ = jacobian(g, q)
    return (eta * gq / 2) ** 2


def soret_equilibrium(g: GFunction, grid: torch.Tensor, *, theory: str = "eq10") -> torch.Tensor:
    """Zero-flux density in one dimension, normalized on ``grid``.

    Writes the flux as ``J = -A rho' - B rho`` and integrates
    ``(log rho)' = -B / A`` with the trapezoid rule. For ``theory="eq10"`` (the
    paper, |U| = 1) ``A = eta^2 |g| g``, ``B = eta^2 g^2 g' / |g|``, so rho ∝ g^-1;
    for ``"fokker_planck"`` ``A = eta^2 g^2 / 2``, ``B = eta^2 g g'``, so rho ∝ g^-2.
    eta cancels.

    Args:
        g: Noise amplitude of one coordinate.
        grid: Increasing points ``(M,)``.
        theory: ``"eq10"`` or ``"fokker_planck"``.

    Returns:
        Density ``(M,)`` with unit trapezoid integral over the grid.
    """
    grid = torch.as_tensor(grid)
    if not grid.is_floating_point():
        grid = grid.to(torch.get_default_dtype())
    gq, jac = jacobian(g, grid.reshape(-1, 1))
    if gq.shape[1] != 1:
        raise UsageError("the Soret equilibrium is computed for one coordinate")
    gv, dg = gq[:, 0], jac[:, 0, 0]
    if theory == "eq10":
        a, b = gv.abs() * gv, gv**2 * dg / gv.abs()
    elif theory == "fokker_planck":
        a, b = gv**2 / 2, gv * dg
    else:
        raise UsageError(f"theory must be 'eq10' or 'fokker_planck', got {theory!r}")
    slope = -b / a
    logrho = torch.cat([slope.new_zeros(1), torch.cumsum(0.5 * (slope[1:] + slope[:-1]) * torch.diff(grid), 0)])
    rho = torch.exp(logrho - logrho.max())
    return rho / torch.trapezoid(rho, grid)


def stationary_exponent(g: GFunction, grid: torch.Tensor, *, theory: str = "eq10") -> float:
    """The k in ``rho ∝ g^-k`` of :func:`soret_equilibrium`, by a least-squares fit on the grid.

    For ``"eq10"`` this is 1 for every g, for ``"fokker_planck"`` 2.

    Raises:
        UsageError: g is (nearly) constant on the grid, so k is undefined.
    """
    grid = torch.as_tensor(grid)
    rho = soret_equilibrium(g, grid, theory=theory)
    gq, _ = jacobian(g, grid.reshape(-1, 1))
    x = torch.log(gq[:, 0].abs())
    if float(x.max() - x.min()) < 1e-9:
        raise UsageError("g is constant on the grid: the stationary exponent is undefined")
    y = torch.log(rho)
    xc = x - x.mean()
    return float(-(xc * (y - y.mean())).sum() / (xc * xc).sum())
