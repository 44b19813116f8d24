"""The walk of Eq. 8 set up for comparison with Eq. 10: cases, plane-flux counts and the predictions.

For each case the suite (:mod:`thermosgd.reproduce.walk_suite`) reports

(a) the thermophoretic flux: net crossings per step of planes through a region
    of exactly uniform density (one step from i.i.d. uniform positions),
(b) the diffusive flux: the same under a linear density profile, minus the
    uniform-density flux scaled by the local density,
(c) the stationary density in a reflecting box, fitted as rho ∝ g^-k,
(d) the thermophoretic flux at several eta, fitted as J ∝ eta^p.

This module holds what is simulated and what is predicted: the counts
(:func:`measure_plane_flux`) and Eq. 10 / Fokker-Planck at the same planes
(:func:`predict`); the fits are in :mod:`thermosgd.analysis.walk_fits`.
Planes are normal to g at the measuring point (so the flux is along U, as in
Eq. 10) and at least one jump length apart, so one particle crosses at most one
plane per step. Standard errors come from the i.i.d. particles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from thermosgd.errors import UsageError
from thermosgd.seeds import derive_seed, generator, stream
from thermosgd.walk import theory
from thermosgd.walk.simulate import Planes, simulate

__all__ = ["Case", "CASES", "corners", "geometry", "measure_plane_flux", "plane_points", "predict"]

DTYPE = torch.float64


@dataclass(frozen=True)
class Case:
    """One comparison: a g, where to measure, and at which step sizes.

    Attributes:
        name: Short label.
        g: Formula in q (see :func:`~thermosgd.walk.expr.parse_g`).
        dim: Number of coordinates D (all share one zeta).
        point: Where the fluxes are measured, length D.
        half: Half-width of the uniform region around ``point``.
        eta: Step size for (a) and (b).
        etas: Step sizes for (d); planes are spaced for the largest.
        box: Reflecting box (lo, hi) for (c) in one dimension, or None.
        box_eta: Step size for (c).
        patch: Patch radius for D > 1.
        offsets: Plane offsets along the normal for D > 1 (for D = 1 they fill the region).
    """

    name: str
    g: str
    dim: int
    point: tuple[float, ...]
    half: float
    eta: float
    etas: tuple[float, ...]
    box: tuple[float, float] | None = None
    box_eta: float = 0.2
    patch: float = 0.25
    offsets: tuple[float, ...] = field(default=(0.0,))


CASES: tuple[Case, ...] = (
    Case("1d-linear", "1 + 0.5*q", 1, (0.0,), 1.0, 0.2, (0.05, 0.1, 0.2, 0.4), box=(0.0, 6.0)),
    Case("1d-nonlinear", "1 + 0.5*sin(q)", 1, (0.0,), 1.0, 0.2, (0.05, 0.1, 0.2, 0.4), box=(-math.pi / 2, math.pi / 2)),
    Case(
        "2d-shared",
        "(exp(0.5*q[0]), exp(0.5*q[1]))",
        2,
        (0.0, 0.0),
        0.75,
        0.2,
        (0.05, 0.1, 0.2),
        patch=0.25,
        offsets=(0.0,),
    ),
)


# --------------------------------------------------------------------------- sampling


def _sample_region(n, point, half, normal, slope, gen) -> torch.Tensor:
    """i.i.d. points with density ∝ 1 + slope * normal.(q - point) on the cube ``point ± half``: ``(n, D)``."""
    dim = point.numel()
    if slope == 0:
        return point + half * (2 * torch.rand(n, dim, generator=gen, dtype=DTYPE) - 1)
    top = 1 + abs(slope) * half * float(normal.abs().sum())
    out = []
    have = 0
    while have < n:
        x = point + half * (2 * torch.rand(2 * n, dim, generator=gen, dtype=DTYPE) - 1)
        keep = torch.rand(2 * n, generator=gen, dtype=DTYPE) * top < 1 + slope * ((x - point) @ normal)
        out.append(x[keep])
        have += int(keep.sum())
    return torch.cat(out)[:n]


# --------------------------------------------------------------------------- (a), (b), (d)


def _normal_at(g, point) -> torch.Tensor:
    gp, _ = theory.jacobian(g, point[None, :])
    return gp[0] / torch.linalg.vector_norm(gp[0])


def plane_points(point, normal, offsets, patch):
    """Points where theory is evaluated per plane, and their quadrature weights: ``(K, P, D)``, ``(P,)``."""
    centers = point + offsets[:, None] * normal  # (K, D)
    dim = point.numel()
    if dim == 2:
        # Gauss-Legendre along the patch: the measured flux is a patch average.
        x, w = np.polynomial.legendre.leggauss(5)
        tangent = torch.stack([-normal[1], normal[0]])
        along = torch.as_tensor(x, dtype=DTYPE) * patch
        pts = centers[:, None, :] + along[None, :, None] * tangent
        return pts, torch.as_tensor(w / 2, dtype=DTYPE)
    return centers[:, None, :], torch.ones(1, dtype=DTYPE)


def predict(g, pts, weights, normal, rho, grad_rho, eta):
    """Eq. 10 and Fokker-Planck fluxes through each plane along ``normal``, patch-averaged: dicts of ``(K,)``."""
    k, p, dim = pts.shape
    flat = pts.reshape(-1, dim)
    rho_v = rho(flat)
    grad_v = grad_rho(flat)
    gq, _ = theory.jacobian(g, flat)
    ghat = gq / torch.linalg.vector_norm(gq, dim=1, keepdim=True)
    along = ghat @ normal  # Eq. 10's J points along g
    eq = theory.flux(g, flat, rho_v, grad_v, eta)
    fp = theory.flux_fokker_planck(g, flat, rho_v, grad_v, eta)

    def avg(v):
        return (v.reshape(k, p) * weights).sum(1)

    return {
        "eq10_diffusion": avg(eq.diffusion * along),
        "eq10_thermophoretic": avg(eq.thermophoretic * along),
        "fp_diffusion": avg(fp.diffusion @ normal),
        "fp_thermophoretic": avg(fp.thermophoretic @ normal),
    }


def measure_plane_flux(
    g,
    point,
    normal,
    offsets,
    *,
    eta: float,
    particles: int,
    half: float,
    slope: float = 0.0,
    patch: float | None = None,
    seed: int = 0,
    noise: str = "binary",
    chunk: int = 1_000_000,
) -> dict:
    """One step of the walk from i.i.d. positions; net crossings of each plane.

    Positions are drawn with density ∝ ``1 + slope * normal.(q - point)`` on the cube
    ``point ± half`` (uniform for ``slope = 0``) and moved once with Eq. 8.

    Args:
        g: Noise amplitude, row-wise ``(N, D) -> (N, D)``.
        point: ``(D,)``; normal: unit ``(D,)``; offsets: ``(K,)`` plane offsets along it.
        eta: Step size. particles: Total number of particles (drawn in chunks).
        half: Half-width of the region. slope: Relative density gradient along the normal.
        patch: Patch radius (D > 1); None for full planes (D = 1).
        seed: Seed; chunk c draws its positions and its step from the streams
            ``walk.flux_positions`` and ``walk.flux_steps`` of :mod:`thermosgd.seeds`, index c.
        noise: ``"binary"`` or ``"gaussian"``.

    Returns:
        Dict of tensors: ``flux`` and ``stderr`` ``(K,)`` (probability per step and
        unit area), ``mean`` and ``mean_stderr`` (the plain average over planes).
    """
    dim = point.numel()
    counts = torch.zeros(len(offsets), 2, dtype=torch.long)
    planes = Planes(
        offsets=[float(point @ normal + o) for o in offsets],
        normal=0 if dim == 1 else normal.tolist(),
        center=None if patch is None else point.tolist(),
        halfwidth=patch,
    )
    done = 0
    c = 0
    while done < particles:
        n = min(chunk, particles - done)
        q0 = _sample_region(n, point, half, normal, slope, generator(seed, stream("walk.flux_positions"), c))
        res = simulate(g, q0, eta, 1, planes=planes, seed=derive_seed(seed, stream("walk.flux_steps"), c), noise=noise)
        counts += res.crossings[0]
        done += n
        c += 1
    area = planes.area(dim)
    total = float(particles)
    fwd, bwd = counts[:, 0].to(DTYPE), counts[:, 1].to(DTYPE)
    mean_c = (fwd - bwd) / total
    hits = (fwd + bwd) / total
    k = len(offsets)
    # A particle crosses at most one plane, so per particle sum_k c_k^2 = #crossed.
    pooled_var = (hits.sum() - mean_c.sum() ** 2) / k**2 / total
    return {
        "flux": mean_c / area,
        "stderr": torch.sqrt((hits - mean_c**2) / total) / area,
        "mean": mean_c.mean() / area,
        "mean_stderr": torch.sqrt(pooled_var) / area,
    }


def geometry(case: Case, g, etas):
    """Point, normal, plane offsets and a check that jumps stay inside the uniform region."""
    point = torch.tensor(case.point, dtype=DTYPE)
    normal = _normal_at(g, point)
    probe = generator(stream("walk.probe_points"))
    grid = point + case.half * (2 * torch.rand(4096, case.dim, generator=probe, dtype=DTYPE) - 1)
    gmax = float(torch.linalg.vector_norm(theory.jacobian(g, grid)[0], dim=1).max())
    jump = max(etas) * gmax * 1.05
    if case.dim == 1:
        room = case.half - jump
        count = max(1, int(2 * room / jump) + 1)
        offsets = torch.linspace(-room, room, count, dtype=DTYPE) if count > 1 else torch.zeros(1, dtype=DTYPE)
        if room <= 0:
            raise UsageError(f"{case.name}: region half-width {case.half} is smaller than a jump {jump:.3g}")
    else:
        offsets = torch.tensor(case.offsets, dtype=DTYPE)
        reach = math.sqrt(float(offsets.abs().max()) ** 2 + case.patch**2) + jump
        if reach > case.half:
            raise UsageError(f"{case.name}: patches plus a jump ({reach:.3g}) leave the region ({case.half})")
    return point, normal, offsets, jump


def corners(dim: int) -> torch.Tensor:
    """Corners and center of the unit cube [-1, 1]^D (for D <= 10), plus random points: ``(P, D)``."""
    pts = [torch.zeros(1, dim, dtype=DTYPE)]
    if dim <= 10:
        grid = torch.cartesian_prod(*[torch.tensor([-1.0, 0.0, 1.0], dtype=DTYPE)] * dim)
        pts.append(grid.reshape(-1, dim))
    pts.append(2 * torch.rand(2048, dim, generator=generator(stream("walk.probe_points")), dtype=DTYPE) - 1)
    return torch.cat(pts)
