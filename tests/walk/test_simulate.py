"""The simulator against exactly solvable walks, and its crossing counter against brute force.

Statistical checks use fixed seeds (so they are deterministic) and tolerances of
5 standard errors unless stated otherwise.
"""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from thermosgd.errors import UsageError
from thermosgd.walk import Free, Periodic, Planes, Reflect, parse_g, simulate
from thermosgd.walk.simulate import _count_axis, _count_general

F64 = torch.float64


def const(value):
    return lambda q: torch.full_like(q, value)


@pytest.mark.parametrize("noise", ["binary", "gaussian"])
@pytest.mark.parametrize("domain", [Free(), Periodic(-1.0, 1.0)])
def test_constant_g_variance_grows_as_eta2_g2_t(noise, domain):
    eta, g, n, steps = 0.1, 2.0, 20_000, 40
    q0 = torch.zeros(n, 1, dtype=F64) if isinstance(domain, Free) else torch.rand(n, 1, dtype=F64) * 2 - 1
    res = simulate(const(g), q0, eta, steps, domain=domain, noise=noise, seed=1)
    t = torch.arange(steps + 1, dtype=F64)
    expected = eta**2 * g**2 * t
    # msd is a mean of N i.i.d. squares; Var(x^2) <= 3 sigma^4 for these laws.
    tol = 5 * math.sqrt(2 / n) * expected + 1e-12
    assert torch.all((res.msd[:, 0] - expected).abs() <= tol)


def test_binary_displacement_is_binomial():
    # Constant g, binary zeta: displacement / (eta g) = 2 Binomial(T, 1/2) - T, exactly.
    eta, g, n, steps = 0.05, 1.5, 20_000, 12
    res = simulate(const(g), torch.zeros(n, 1, dtype=F64), eta, steps, seed=2)
    k = torch.round((res.q[:, 0] / (eta * g) + steps) / 2).to(torch.long)
    torch.testing.assert_close(res.q[:, 0], eta * g * (2 * k - steps).to(F64))
    observed = np.bincount(k.numpy(), minlength=steps + 1)
    expected = stats.binom.pmf(np.arange(steps + 1), steps, 0.5) * n
    # pool the sparse tails so every cell expects >= 5
    keep = expected >= 5
    obs = np.r_[observed[keep], observed[~keep].sum()]
    exp = np.r_[expected[keep], expected[~keep].sum()]
    assert stats.chisquare(obs, exp).pvalue > 1e-4  # seed 2 fixed: deterministic


@pytest.mark.parametrize("noise", ["binary", "gaussian"])
def test_symmetric_steps_have_zero_mean_displacement(noise):
    # q_t is a martingale for any g when zeta is symmetric (free space).
    g = parse_g("1 + 0.5*sin(q)")
    n, steps = 20_000, 100
    res = simulate(g, torch.zeros(n, 1, dtype=F64), 0.1, steps, noise=noise, seed=3)
    stderr = torch.sqrt(res.msd[1:, 0] / n)
    assert torch.all(res.mean_displacement[1:, 0].abs() <= 5 * stderr)


def test_shared_zeta_moves_coordinates_together():
    g = lambda q: torch.tensor([1.0, 2.0], dtype=q.dtype).expand_as(q)  # noqa: E731
    shared = simulate(g, torch.zeros(1000, 2, dtype=F64), 0.1, 20, seed=4)
    torch.testing.assert_close(shared.q[:, 1], 2 * shared.q[:, 0])
    indep = simulate(g, torch.zeros(5000, 2, dtype=F64), 0.1, 20, seed=4, shared=False)
    corr = torch.corrcoef(indep.q.T)[0, 1]
    assert abs(float(corr)) < 5 / math.sqrt(5000)


def test_eq4_kick_with_random_gamma():
    # gamma = +-U(0.5, 1.5), f = 1: E[(gamma f)^2] = 13/12, so msd = eta^2 13/12 t.
    def kick(q, gen):
        u = 0.5 + torch.rand(q.shape, generator=gen, dtype=q.dtype)
        s = torch.randint(0, 2, q.shape, generator=gen).to(q.dtype) * 2 - 1
        return u * s

    n, eta, steps = 20_000, 0.1, 30
    res = simulate(None, torch.zeros(n, 1, dtype=F64), eta, steps, kick=kick, seed=5)
    expected = eta**2 * 13 / 12 * steps
    assert abs(float(res.msd[-1, 0]) - expected) < 5 * math.sqrt(2 / n) * expected


def test_boxes_keep_particles_inside_and_reflect_keeps_uniform():
    n = 20_000
    q0 = torch.rand(n, 1, dtype=F64)
    per = simulate(const(0.3), q0, 1.0, 15, domain=Periodic(0.0, 1.0), seed=6)
    assert float(per.q.min()) >= 0 and float(per.q.max()) < 1
    ref = simulate(const(0.37), q0, 1.0, 15, domain=Reflect(0.0, 1.0), seed=6)
    assert float(ref.q.min()) >= 0 and float(ref.q.max()) <= 1
    # Uniform is invariant under mirror walls for a constant jump (exact), so the
    # histogram stays uniform: chi-square, seed 6 fixed.
    counts = torch.histc(ref.q[:, 0], bins=20, min=0, max=1).numpy()
    assert stats.chisquare(counts).pvalue > 1e-4


def test_same_seed_same_walk_and_different_seed_different_walk():
    g = parse_g("1 + 0.5*q")
    a = simulate(g, torch.zeros(100, 1, dtype=F64), 0.1, 10, seed=7)
    b = simulate(g, torch.zeros(100, 1, dtype=F64), 0.1, 10, seed=7)
    c = simulate(g, torch.zeros(100, 1, dtype=F64), 0.1, 10, seed=8)
    assert torch.equal(a.q, b.q) and not torch.equal(a.q, c.q)


def test_snapshots_follow_the_schedule_and_density_integrates_to_one():
    res = simulate(const(1.0), torch.zeros(1000, 1, dtype=F64), 0.1, 20, record=range(0, 21, 5), seed=9)
    assert res.record_steps.tolist() == [0, 5, 10, 15, 20]
    assert res.snapshots.shape == (5, 1000, 1)
    centers, rho = res.density(40, -3, 3, since=10)
    assert float(rho.sum() * (centers[1] - centers[0])) == pytest.approx(1.0)
    _, rho_t = res.density_over_time(40, -3, 3)
    assert rho_t.shape == (5, 40)


# --------------------------------------------------------------------------- crossings


def _fold(x, domain):
    if isinstance(domain, Free):
        return x
    length = domain.hi - domain.lo
    if isinstance(domain, Periodic):
        return domain.lo + np.mod(x - domain.lo, length)
    y = np.mod(x - domain.lo, 2 * length)
    return domain.lo + np.where(y < length, y, 2 * length - y)


def _brute_crossings(xb, d, offsets, domain, substeps=20_000):
    """Trace each folded path in small pieces and count pieces that cross each plane."""
    out = np.zeros((len(offsets), 2), dtype=int)
    frac = np.linspace(0, 1, substeps)
    for x, step in zip(xb, d):
        path = _fold(x + frac * step, domain)
        inc = np.diff(path)
        if isinstance(domain, Periodic):  # a piece that wraps around is a short step, not a jump
            length = domain.hi - domain.lo
            inc = (inc + length / 2) % length - length / 2
        start, end = path[:-1], path[:-1] + inc
        for k, s in enumerate(offsets):
            out[k, 0] += int(((start < s) & (s <= end)).sum())
            out[k, 1] += int(((end < s) & (s <= start)).sum())
    return out


@pytest.mark.parametrize("domain", [Free(), Periodic(0.0, 1.0), Reflect(0.0, 1.0)])
def test_axis_crossings_match_brute_force(domain):
    gen = torch.Generator().manual_seed(10)
    n = 150
    xb = torch.rand(n, generator=gen, dtype=F64)
    d = (torch.rand(n, generator=gen, dtype=F64) * 2 - 1) * 2.3  # jumps past walls, several times
    offsets = torch.tensor([0.1, 0.45, 0.8], dtype=F64)
    fast = _count_axis(xb, d, offsets, domain).numpy()
    slow = _brute_crossings(xb.numpy(), d.numpy(), offsets.numpy(), domain)
    np.testing.assert_array_equal(fast, slow)


def test_patch_crossings_match_a_loop():
    gen = torch.Generator().manual_seed(11)
    q = torch.rand(400, 2, generator=gen, dtype=F64) * 2 - 1
    dq = (torch.rand(400, 2, generator=gen, dtype=F64) * 2 - 1) * 0.6
    normal = torch.tensor([0.6, 0.8], dtype=F64)
    center = torch.tensor([0.1, -0.2], dtype=F64)
    offsets = torch.tensor([-0.3, 0.0, 0.25], dtype=F64)
    fast = _count_general(q, dq, offsets, normal, center, 0.4)
    slow = torch.zeros_like(fast)
    for p in range(q.shape[0]):
        for k, s in enumerate(offsets.tolist()):
            a, b = float(q[p] @ normal), float((q[p] + dq[p]) @ normal)
            if a < s <= b or b < s <= a:
                x = q[p] + (s - a) / (b - a) * dq[p]
                c = center + (s - float(center @ normal)) * normal
                if float(torch.linalg.vector_norm(x - c)) <= 0.4:
                    slow[k, 0 if b > a else 1] += 1
    assert torch.equal(fast, slow)
    assert int(fast.sum()) > 20  # the test crosses something


def test_flux_through_planes_for_constant_g_is_unbiased():
    # Constant g, uniform density: crossings each way are equal in expectation.
    n = 50_000
    q0 = torch.rand(n, 1, dtype=F64) * 4 - 2
    res = simulate(const(1.0), q0, 0.3, 3, planes=Planes([-0.5, 0.0, 0.5]), seed=12)
    assert res.crossings.shape == (3, 3, 2)
    assert torch.all(res.flux.abs() <= 5 * res.flux_stderr() + 1e-12)
    assert float(res.crossings[0].sum()) == pytest.approx(3 * n * 0.3 / 4, rel=0.1)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(eta=0.0), "eta"),
        (dict(eta=-1.0), "eta"),
        (dict(eta=float("nan")), "eta"),
        (dict(steps=0), "steps"),
        (dict(noise="cauchy"), "noise"),
        (dict(domain=Reflect(1.0, 2.0)), "inside|lie in"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = dict(eta=0.1, steps=5)
    args.update({k: v for k, v in kwargs.items() if k in args})
    extra = {k: v for k, v in kwargs.items() if k not in args}
    with pytest.raises(UsageError, match=match):
        simulate(const(1.0), torch.zeros(10, 1, dtype=F64), args["eta"], args["steps"], **extra)


def test_box_bounds_and_nonpositive_g():
    with pytest.raises(UsageError, match="LO < HI"):
        Reflect(1.0, 1.0)
    with pytest.raises(UsageError, match="LO < HI"):
        Periodic(2.0, 1.0)
    with pytest.raises(UsageError, match="positive"):
        simulate(parse_g("1 - q"), torch.full((10, 1), 2.0, dtype=F64), 0.1, 5)
    with pytest.raises(UsageError, match="positive and finite"):
        simulate(parse_g("9**9**9 + q"), torch.zeros(10, 1, dtype=F64), 0.1, 5)
    with pytest.raises(UsageError, match="free domain"):
        simulate(
            const(1.0),
            torch.rand(10, 2, dtype=F64),
            0.1,
            2,
            domain=Periodic(0, 1),
            planes=Planes([0.5], normal=[1.0, 1.0]),
        )
