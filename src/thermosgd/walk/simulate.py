"""The random walk of Sec. 3: Eq. 4 and its reduced form Eq. 8, many particles at once.

Eq. 8 moves every particle by ``q_{t+1} = q_t - eta * g(q_t) * zeta`` with g
evaluated at the departure point and ``zeta`` a symmetric unit-variance draw
(binary +-1 as in the paper, or Gaussian). Coordinates either share one zeta per
particle (the set U of Eq. 7) or draw their own. Eq. 4 is the general form
``q_{t+1} = q_t - eta * gamma f(q_t, xi)`` with a user-supplied random kick.

Particles form a batch dimension: positions are ``(particles, D)``. One step
function per process, one loop (:func:`simulate`). Every random draw comes from a
``torch.Generator`` seeded by the ``seed`` argument.

Measurements made inside the loop (they need the step itself, not only the
positions): net displacement moments every step, and crossings of planes
counted from the actual jumps, in both directions. Snapshots of the positions
are taken on a schedule; densities are computed from them afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from thermosgd.errors import UsageError

__all__ = ["Free", "Periodic", "Reflect", "Planes", "WalkResult", "simulate"]

GFunction = Callable[[torch.Tensor], torch.Tensor]
KickFunction = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


# --------------------------------------------------------------------------- domains


@dataclass(frozen=True)
class Free:
    """Unbounded space R^D."""

    def move(self, q: torch.Tensor, dq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return q + dq, dq

    def check_inside(self, q: torch.Tensor) -> None:
        return None

    def images(self, offsets: torch.Tensor, lo: float, hi: float):
        """Copies of the planes the unfolded path may cross: (positions, plane index, orientation)."""
        idx = torch.arange(offsets.numel())
        return offsets, idx, torch.ones_like(offsets)


@dataclass(frozen=True)
class _Box:
    lo: float
    hi: float

    def __post_init__(self):
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)):
            raise UsageError(f"domain bounds must be finite, got LO={self.lo}, HI={self.hi}")
        if not math.isfinite(self.hi - self.lo):
            raise UsageError(f"domain [{self.lo}, {self.hi}] is too wide: HI - LO overflows")
        if self.lo >= self.hi:
            raise UsageError(f"domain needs LO < HI, got LO={self.lo}, HI={self.hi}")

    @property
    def length(self) -> float:
        return self.hi - self.lo

    def check_inside(self, q: torch.Tensor) -> None:
        if q.numel() and (q.min() < self.lo or q.max() > self.hi):
            raise UsageError(f"initial positions must lie in [{self.lo}, {self.hi}]")


@dataclass(frozen=True)
class Periodic(_Box):
    """The torus [lo, hi)^D: a particle leaving one side re-enters at the other."""

    def move(self, q, dq):
        return self.lo + torch.remainder(q + dq - self.lo, self.length), dq

    def images(self, offsets, lo, hi):
        m = torch.arange(math.floor((lo - self.hi) / self.length), math.ceil((hi - self.lo) / self.length) + 1)
        pos = (offsets[None, :] + self.length * m[:, None].to(offsets)).reshape(-1)
        idx = torch.arange(offsets.numel()).repeat(m.numel())
        return pos, idx, torch.ones_like(pos)


@dataclass(frozen=True)
class Reflect(_Box):
    """The box [lo, hi]^D with mirror walls: a jump past a wall is folded back."""

    def move(self, q, dq):
        y = torch.remainder(q + dq - self.lo, 2 * self.length)
        new = self.lo + torch.where(y < self.length, y, 2 * self.length - y)
        return new, new - q

    def images(self, offsets, lo, hi):
        # The folded path crosses plane s wherever the unfolded path crosses
        # s + 2mL (same direction) or 2 lo - s + 2mL (mirrored, opposite direction).
        two = 2 * self.length
        m = torch.arange(math.floor((lo - self.hi) / two) - 1, math.ceil((hi - self.lo) / two) + 2)
        shift = two * m[:, None].to(offsets)
        direct = (offsets[None, :] + shift).reshape(-1)
        mirror = (2 * self.lo - offsets[None, :] + shift).reshape(-1)
        idx = torch.arange(offsets.numel()).repeat(m.numel())
        pos = torch.cat([direct, mirror])
        orient = torch.cat([torch.ones_like(direct), -torch.ones_like(mirror)])
        return pos, torch.cat([idx, idx]), orient


# --------------------------------------------------------------------------- planes


@dataclass(frozen=True)
class Planes:
    """Hyperplanes ``{q : n . q = s}`` through which crossings are counted.

    Attributes:
        offsets: Plane positions s along the normal, length K.
        normal: A coordinate index (planes ``q[axis] = s``, any domain) or a
            vector n of length D (normalized here; free domain only).
        center: Optional point of length D; with ``halfwidth`` it restricts each
            plane to a patch: the (D-1)-ball of radius ``halfwidth`` around the
            projection of ``center`` onto that plane (free domain only).
        halfwidth: Patch radius, same units as q.
    """

    offsets: Sequence[float]
    normal: int | Sequence[float] = 0
    center: Sequence[float] | None = None
    halfwidth: float | None = None

    def area(self, dim: int) -> float:
        """Measure of one plane patch (1 for full planes, the flux is then per plane)."""
        if self.halfwidth is None:
            return 1.0
        m = dim - 1
        return math.pi ** (m / 2) / math.gamma(m / 2 + 1) * self.halfwidth**m


# --------------------------------------------------------------------------- result


@dataclass
class WalkResult:
    """What one call to :func:`simulate` measured.

    Attributes:
        q: Final positions, ``(particles, D)``.
        eta: Step size.
        record_steps: Steps at which snapshots were taken, ``(R,)``.
        snapshots: Positions at those steps, ``(R, particles, D)``.
        mean_displacement: Mean net displacement from the start, per step,
            ``(steps + 1, D)`` (unwrapped in a periodic domain).
        msd: Mean squared net displacement, ``(steps + 1, D)``.
        crossings: Plane crossings per step, ``(steps, K, 2)``: ``[..., 0]``
            along the normal, ``[..., 1]`` against it. Empty when no planes.
        plane_area: Measure of one plane patch (1 for full planes).
    """

    q: torch.Tensor
    eta: float
    record_steps: torch.Tensor
    snapshots: torch.Tensor
    mean_displacement: torch.Tensor
    msd: torch.Tensor
    crossings: torch.Tensor
    plane_area: float = 1.0
    particles: int = field(init=False)

    def __post_init__(self):
        self.particles = self.q.shape[0]

    @property
    def flux(self) -> torch.Tensor:
        """Net probability flux through each plane per step and unit area, ``(steps, K)``."""
        net = (self.crossings[..., 0] - self.crossings[..., 1]).to(self.q.dtype)
        return net / (self.particles * self.plane_area)

    def flux_stderr(self) -> torch.Tensor:
        """Standard error of :attr:`flux` for one step from i.i.d. particles, ``(steps, K)``.

        Each particle contributes +1, -1 or 0 crossings of a plane in a step, so
        ``Var = (E[c^2] - E[c]^2) / N`` with ``E[c^2]`` the fraction that crossed.
        """
        n = self.particles
        hits = (self.crossings[..., 0] + self.crossings[..., 1]).to(self.q.dtype) / n
        mean = (self.crossings[..., 0] - self.crossings[..., 1]).to(self.q.dtype) / n
        return torch.sqrt(torch.clamp(hits - mean**2, min=0) / n) / self.plane_area

    def density(self, bins: int, lo: float, hi: float, *, axis: int = 0, since: int = 0):
        """Histogram of coordinate ``axis``, averaged over the snapshots at steps >= ``since``.

        Returns:
            ``(centers, rho)``, both ``(bins,)``; ``rho`` is a probability density
            (integrates to the fraction of particles inside ``[lo, hi]``).
        """
        keep = self.record_steps >= since
        if not bool(keep.any()):
            raise UsageError(f"no snapshot at or after step {since}")
        x = self.snapshots[keep][..., axis]
        counts = torch.stack([torch.histc(s, bins=bins, min=lo, max=hi) for s in x]).sum(0)
        width = (hi - lo) / bins
        rho = counts / (x.shape[0] * x.shape[1] * width)
        centers = lo + width * (torch.arange(bins, dtype=rho.dtype) + 0.5)
        return centers, rho

    def density_over_time(self, bins: int, lo: float, hi: float, *, axis: int = 0):
        """Histogram of coordinate ``axis`` at every snapshot: ``(centers (bins,), rho (R, bins))``."""
        width = (hi - lo) / bins
        x = self.snapshots[..., axis]
        rho = torch.stack([torch.histc(s, bins=bins, min=lo, max=hi) for s in x]) / (x.shape[1] * width)
        centers = lo + width * (torch.arange(bins, dtype=rho.dtype) + 0.5)
        return centers, rho


# --------------------------------------------------------------------------- steps


def _noise(shape, kind: str, dtype, gen: torch.Generator) -> torch.Tensor:
    if kind == "binary":
        return torch.empty(shape, dtype=dtype).bernoulli_(0.5, generator=gen).mul_(2).sub_(1)
    return torch.randn(shape, dtype=dtype, generator=gen)


def as_field(value: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Bring g(q) to shape ``(particles, D)``: a ``(particles,)`` result is shared by all coordinates."""
    value = torch.as_tensor(value, dtype=q.dtype)
    if value.dim() == 1 and value.shape[0] == q.shape[0]:
        value = value[:, None]
    return torch.broadcast_to(value, q.shape)


def _step_eq8(q, g, eta, noise, shared, gen):
    """Eq. 8: ``dq = -eta g(q) zeta``; returns the jump ``(particles, D)``."""
    try:
        gq = as_field(g(q), q)
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's g: any failure is reported as one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UsageError(
            f"g failed on positions of shape {tuple(q.shape)}: {type(exc).__name__}{': ' + first if first else ''} "
            "(g must map (particles, D) positions to (particles,) or (particles, D) positive values)"
        ) from None
    ok = (gq > 0) & torch.isfinite(gq)
    if not bool(ok.all()):
        bad = torch.nonzero(~ok)[0]
        where = q[bad[0]].tolist()
        far = f"; the walk got that far with eta = {eta:.4g}: choose a smaller eta" if q.abs().max() > 1e100 else ""
        raise UsageError(f"g must be positive and finite, but g(q={where}) = {gq[bad[0], bad[1]].item():.4g}{far}")
    zeta = _noise((q.shape[0], 1 if shared else q.shape[1]), noise, q.dtype, gen)
    dq = -eta * gq * zeta
    if not bool(torch.isfinite(dq).all()):  # eta, not g: g was positive and finite here
        big = float(gq.abs().max())
        raise UsageError(f"the step eta g(q) zeta overflows (eta = {eta:.4g}, g up to {big:.4g}); choose a smaller eta")
    return dq


def _step_eq4(q, kick, eta, gen):
    """Eq. 4: ``dq = -eta gamma f(q, xi)`` with the user's random kick ``(particles, D)``."""
    dq = -eta * as_field(kick(q, gen), q)
    if not bool(torch.isfinite(dq).all()):
        raise UsageError("the kick gamma*f(q, xi) returned a non-finite value")
    return dq


# --------------------------------------------------------------------------- crossings


def _count_axis(xb: torch.Tensor, d: torch.Tensor, offsets: torch.Tensor, domain) -> torch.Tensor:
    """Crossings of planes ``x = s`` by the jumps ``xb -> xb + d`` (folded by the domain): ``(K, 2)``."""
    xa = xb + d
    span_lo = float(torch.minimum(xb, xa).min())
    span_hi = float(torch.maximum(xb, xa).max())
    pos, idx, orient = domain.images(offsets, span_lo, span_hi)
    order = torch.argsort(pos)
    pos, idx, orient = pos[order], idx[order], orient[order]
    e = pos.numel()
    ib = torch.searchsorted(pos, xb, right=True)
    ia = torch.searchsorted(pos, xa, right=True)
    right = ia > ib
    left = ia < ib
    # A jump to the right crosses images ib..ia-1; count with a difference array.
    n_right = torch.cumsum(torch.bincount(ib[right], minlength=e + 1) - torch.bincount(ia[right], minlength=e + 1), 0)[
        :e
    ]
    n_left = torch.cumsum(torch.bincount(ia[left], minlength=e + 1) - torch.bincount(ib[left], minlength=e + 1), 0)[:e]
    fwd = torch.where(orient > 0, n_right, n_left)
    bwd = torch.where(orient > 0, n_left, n_right)
    out = torch.zeros(offsets.numel(), 2, dtype=torch.long)
    out[:, 0].index_add_(0, idx, fwd)
    out[:, 1].index_add_(0, idx, bwd)
    return out


def _count_general(q, dq, offsets, normal, center, halfwidth) -> torch.Tensor:
    """Crossings of (patches of) oblique planes in free space: ``(K, 2)``."""
    sb = q @ normal
    sa = (q + dq) @ normal
    out = torch.zeros(offsets.numel(), 2, dtype=torch.long)
    for k, s in enumerate(offsets.tolist()):
        fwd = (sb < s) & (sa >= s)
        bwd = (sa < s) & (sb >= s)
        if halfwidth is not None:
            crossed = fwd | bwd
            lam = (s - sb[crossed]) / (sa[crossed] - sb[crossed])
            x = q[crossed] + lam[:, None] * dq[crossed]
            c = center + (s - center @ normal) * normal
            inside = torch.zeros_like(crossed)
            inside[crossed] = torch.linalg.vector_norm(x - c, dim=1) <= halfwidth
            fwd, bwd = fwd & inside, bwd & inside
        out[k, 0] = fwd.sum()
        out[k, 1] = bwd.sum()
    return out


class _Counter:
    """Plane crossings for one simulation; set up once, called every step."""

    def __init__(self, planes: Planes, domain, dim: int, dtype):
        self.offsets = torch.as_tensor(list(planes.offsets), dtype=dtype).reshape(-1)
        self.halfwidth = planes.halfwidth
        if isinstance(planes.normal, int):
            if not 0 <= planes.normal < dim:
                raise UsageError(f"plane axis {planes.normal} out of range for dimension {dim}")
            self.axis: int | None = planes.normal
            normal = torch.zeros(dim, dtype=dtype)
            normal[self.axis] = 1.0
        else:
            self.axis = None
            normal = torch.as_tensor(list(planes.normal), dtype=dtype)
            if normal.shape != (dim,) or not float(torch.linalg.vector_norm(normal)) > 0:
                raise UsageError(f"plane normal must be a nonzero vector of length {dim}")
            normal = normal / torch.linalg.vector_norm(normal)
        self.normal = normal
        if (planes.halfwidth is None) != (planes.center is None):
            raise UsageError("a plane patch needs both center and halfwidth")
        self.center = None if planes.center is None else torch.as_tensor(list(planes.center), dtype=dtype)
        if self.center is not None and (self.center.shape != (dim,) or not (planes.halfwidth or 0) > 0):
            raise UsageError(f"patch center must have length {dim} and halfwidth must be positive")
        self.general = self.axis is None or self.center is not None
        if self.general and not isinstance(domain, Free):
            raise UsageError("oblique planes and plane patches are supported in the free domain only")
        self.domain = domain
        self.area = planes.area(dim)

    def __call__(self, q, dq):
        if self.general:
            return _count_general(q, dq, self.offsets, self.normal, self.center, self.halfwidth)
        return _count_axis(q[:, self.axis], dq[:, self.axis], self.offsets, self.domain)


# --------------------------------------------------------------------------- loop


def _schedule(record, steps: int) -> Callable[[int], bool]:
    if record is None:
        return lambda t: t == 0 or t == steps
    if callable(record):
        return record
    try:
        items = list(record)
    except TypeError:
        raise UsageError(f"record must be a callable step -> bool or a list of steps, got {record!r}") from None
    if isinstance(record, str) or not all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in items):
        raise UsageError(f"record must be a callable step -> bool or a list of integer steps, got {record!r}")
    wanted = {int(t) for t in items}
    return lambda t: t in wanted


def simulate(
    g: GFunction | None,
    q0: torch.Tensor,
    eta: float,
    steps: int,
    *,
    kick: KickFunction | None = None,
    domain: Free | Periodic | Reflect = Free(),
    noise: str = "binary",
    shared: bool = True,
    seed: int = 0,
    planes: Planes | None = None,
    record: Callable[[int], bool] | Iterable[int] | None = None,
) -> WalkResult:
    """Run the walk of Eq. 8 (or Eq. 4) for many particles at once.

    Args:
        g: Noise amplitude, maps positions ``(particles, D)`` to g ``(particles, D)``
            (or ``(particles,)``, shared by all coordinates); must be positive.
            None when ``kick`` is given.
        q0: Initial positions ``(particles, D)`` (or ``(particles,)`` for D = 1);
            its dtype is used throughout.
        eta: Step size (> 0).
        steps: Number of steps T (> 0).
        kick: Eq. 4 instead of Eq. 8: a function ``(q, generator) -> gamma f(q, xi)``,
            ``(particles, D)``, drawing its randomness from the generator.
        domain: :class:`Free`, :class:`Periodic` or :class:`Reflect`.
        noise: Law of zeta in Eq. 8: ``"binary"`` (+-1, the paper's) or
            ``"gaussian"`` (standard normal); both have unit variance, so
            ``eta g`` is the step's standard deviation (Eq. 6).
        shared: One zeta per particle for all coordinates (the set U of Eq. 7)
            or one per coordinate.
        seed: Seed of the generator behind every random draw.
        planes: Planes whose crossings are counted every step.
        record: When to snapshot positions: a schedule ``step -> bool``, an
            iterable of steps, or None for the first and last step.

    Returns:
        A :class:`WalkResult`.

    Raises:
        UsageError: Nonpositive eta or steps, an unknown noise law, positions
            outside the box, or g <= 0 (or not finite) at a visited position.
    """
    q, gen = _checked_inputs(g, kick, domain, eta, steps, noise, q0, seed)
    counter = None if planes is None else _Counter(planes, domain, q.shape[1], q.dtype)
    step = (
        (lambda q: _step_eq8(q, g, eta, noise, shared, gen))
        if kick is None
        else (lambda q: _step_eq4(q, kick, eta, gen))
    )
    return _run(q, step, domain, steps, counter, _schedule(record, steps), eta)


def _checked_inputs(g, kick, domain, eta, steps, noise, q0, seed) -> tuple[torch.Tensor, torch.Generator]:
    """:func:`simulate`'s arguments checked (one UsageError line each); the positions and the generator."""
    if (g is None) == (kick is None):
        raise UsageError("give exactly one of g (Eq. 8) and kick (Eq. 4)")
    if isinstance(g, str):
        raise UsageError(
            f"g must be a function of q, got the string {g!r}; compile a formula with thermosgd.walk.parse_g(text, dim)"
        )
    if not callable(g if kick is None else kick):
        raise UsageError(f"{'g' if kick is None else 'kick'} must be a function, got {type(g or kick).__name__}")
    if not isinstance(domain, (Free, Periodic, Reflect)):
        raise UsageError(f"domain must be Free(), Periodic(lo, hi) or Reflect(lo, hi), got {domain!r}")
    if isinstance(eta, bool) or not (isinstance(eta, (int, float)) and math.isfinite(eta) and eta > 0):
        raise UsageError(f"eta must be a positive number, got {eta}")
    if not (isinstance(steps, int) and steps > 0):
        raise UsageError(f"steps must be a positive integer, got {steps}")
    if noise not in ("binary", "gaussian"):
        raise UsageError(f"noise must be 'binary' or 'gaussian', got {noise!r}")
    try:
        q = torch.as_tensor(q0)
    except (TypeError, ValueError, RuntimeError):
        raise UsageError(f"q0 must be a (particles, D) array of real numbers, got {type(q0).__name__}") from None
    if q.is_complex() or q.dtype == torch.bool:
        raise UsageError(f"q0 must hold real numbers, got {q.dtype}")
    if not q.is_floating_point():
        q = q.to(torch.get_default_dtype())
    q = q.reshape(-1, 1).clone() if q.dim() == 1 else q.clone()
    if q.dim() != 2 or q.shape[0] == 0:
        raise UsageError("q0 must have shape (particles, D) with at least one particle")
    domain.check_inside(q)
    try:
        gen = torch.Generator().manual_seed(int(seed))
    except (TypeError, ValueError, OverflowError, RuntimeError):
        raise UsageError(f"seed must be an integer in [0, 2^63), got {seed!r}") from None
    return q, gen


def _run(q, step, domain, steps: int, counter: _Counter | None, wanted, eta: float) -> WalkResult:
    """The loop: ``steps`` jumps from ``q`` ``(particles, D)``, measured every step, snapshots on ``wanted``."""
    disp = torch.zeros_like(q)
    mean = torch.zeros(steps + 1, q.shape[1], dtype=q.dtype)
    msd = torch.zeros_like(mean)
    crossings = torch.zeros(
        steps if counter else 0, 0 if counter is None else counter.offsets.numel(), 2, dtype=torch.long
    )
    snaps, snap_steps = ([q.clone()], [0]) if wanted(0) else ([], [])
    for t in range(steps):
        dq = step(q)
        if counter is not None:
            crossings[t] = counter(q, dq)
        q, moved = domain.move(q, dq)
        disp += moved
        mean[t + 1] = disp.mean(0)
        msd[t + 1] = (disp * disp).mean(0)
        if wanted(t + 1):
            snaps.append(q.clone())
            snap_steps.append(t + 1)
    snapshots = torch.stack(snaps) if snaps else q.new_zeros(0, *q.shape)
    return WalkResult(
        q=q,
        eta=float(eta),
        record_steps=torch.tensor(snap_steps, dtype=torch.long),
        snapshots=snapshots,
        mean_displacement=mean,
        msd=msd,
        crossings=crossings,
        plane_area=1.0 if counter is None else counter.area,
    )
