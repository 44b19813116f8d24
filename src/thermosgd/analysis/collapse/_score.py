"""Collapse fit, part 2: the collapse score, plain and noise-corrected, evaluated for many exponents at once.

See docs/methods/collapse.md for the estimator and its two evaluation routes (forms, sums).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

# What scipy.stats' norm.cdf and t.ppf evaluate; importing scipy.stats itself would add
# ~0.5 s to the start of every command.
from thermosgd.analysis.collapse._data import SIGN, rescaled_time

_CHUNK = 32  # exponents per block of precomputed quadratic forms (bounds memory)
_BLOCK = 1 << 18  # elements of one (exponents, grid, rows) block of interpolated sums: 2 MiB, in cache
_TABLES = 1 << 23  # numbers in one chunk of weighted-sum tables (64 MiB)
_FORMS_RATIO = 16.0  # "forms" while J·S² ≤ this × the "sums" work per row and exponent (measured: 14–18)


def collapse_score(
    curves: np.ndarray,
    steps: np.ndarray,
    values: np.ndarray,
    over: str,
    exponent: float,
    reference: float,
    grid: np.ndarray,
    scale: float,
) -> float:
    """Plain (plug-in) collapse score (docs/methods/collapse.md) of mean curves at one exponent.

    This is the ``"plain"`` score of :func:`fit_collapse`, biased by the
    seed-mean noise; kept as a reference and for plotting.

    Args:
        curves: ``(K, T)`` seed-averaged curves.
        steps: ``(T,)`` raw SGD steps, ascending.
        values: ``(K,)`` swept values.
        over: ``"lr"`` or ``"batch_size"``.
        exponent: α or β.
        reference: ``x_ref``.
        grid: ``(G,)`` comparison points in rescaled time.
        scale: normalizing variance.

    Returns:
        Score ``≥ 0``; ``inf`` when no grid point is covered by two curves.
    """
    tau = rescaled_time(steps, values, over, exponent, reference)
    interp = np.full((len(values), grid.size), np.nan)
    for k in range(len(values)):
        covered = (grid >= tau[k, 0]) & (grid <= tau[k, -1])
        interp[k, covered] = np.interp(grid[covered], tau[k], curves[k])
    present = np.isfinite(interp)
    n = present.sum(axis=0)
    use = n >= 2
    if not use.any():
        return math.inf
    sub, pres = interp[:, use], present[:, use]
    mean = np.where(pres, sub, 0.0).sum(axis=0) / n[use]
    sq = np.where(pres, (sub - mean) ** 2, 0.0).sum()
    return float(sq / (n[use] - 1).sum() / scale)


class _Lattice(NamedTuple):
    """Where the grid falls in each value's raw steps, for ``E`` exponents (:meth:`_Scorer.lattice`).

    Attributes:
        idx: ``(K, E, G)`` left step of each grid point; ``T`` (a zero row) where not covered.
        frac: ``(K, E, G)`` interpolation weight of the right step; 0 where not covered.
        covered: ``(K, E, G)`` bool, the value's rescaled span holds the grid point.
        n: ``(E, G)`` values covering each grid point.
        inv_n: ``(E, G)`` ``1/n`` where ``n ≥ 2``, else 0.
        norm: ``(E,)`` normalizers ``Σ_τ (n(τ) − 1)`` over points with ``n ≥ 2``.
    """

    idx: np.ndarray
    frac: np.ndarray
    covered: np.ndarray
    n: np.ndarray
    inv_n: np.ndarray
    norm: np.ndarray


def _padded(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(T, X)`` values -> ``(T + 1, X)`` values and right differences, zero rows past the end."""
    T = table.shape[0]
    out = np.zeros((T + 1,) + table.shape[1:])
    out[:T] = table
    diff = np.zeros_like(out)
    np.subtract(out[1:T], out[: T - 1], out=diff[: T - 1])
    return out, diff


def _on_grid(table, diff, idx, frac, out=None, work=None) -> np.ndarray:
    """Linear interpolation ``lo + frac·(hi − lo)`` of ``(T + 1, X)`` tables at ``(E, G)`` points -> ``(E, G, X)``.

    ``out`` and ``work`` (``(E, G, X)``, optional) are filled instead of fresh arrays.
    """
    out = np.take(table, idx, axis=0, out=out, mode="clip")
    step = np.take(diff, idx, axis=0, out=work, mode="clip")
    np.multiply(step, frac[..., None], out=step)
    np.add(out, step, out=out)
    return out


def _weighted_sum(c: np.ndarray, a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``Σ_g c[e, g] a[e, g, :] b[e, g, :]`` -> ``(E, X)`` for ``(E, G)`` c and ``(E, G, X)`` a, b.

    ``out`` (``(E, G, X)``) holds the product; without it the product overwrites ``a``.
    """
    prod = np.multiply(a, b, out=a if out is None else out)
    return np.matmul(c[:, None, :], prod)[:, 0, :]


class _Scorer:
    """The score for any block of exponents and any seed weights.

    For exponent ``e`` and seed weights ``w`` (``(S,)``: 1 for the data,
    multiplicities for a bootstrap resample) the score's numerator is
    ``Σ_j w·M_j(e)·w / den_j(w)`` over groups ``j`` of terms that share a
    denominator ``den_j(w) = (w·u_j)(w·v_j) − off_j Σ w² u_j v_j`` (``u``, ``v``
    alive masks; ``off_j`` drops same-seed products: the U-statistic). It is
    divided by ``Σ_τ (n(τ) − 1)`` and by the variance scale.

    Each term of ``M_j`` has rank at most ``G`` (``c`` its grid weights,
    ``x_{k,s}(τ)`` the replica curves on the grid, ``X_k = Σ_s w_s x_{k,s}``)::

        pair (paired):               Σ_τ c(τ) (X_k(τ) − X_k'(τ))²    c = 1/n where both values cover τ
        self (independent, plain):   Σ_τ c(τ) X_k(τ)²               c = (n − 1)/n where k covers τ
        cross (independent, plain): −2 Σ_τ c(τ) X_k(τ) X_k'(τ)      c = 1/n where both cover τ

    and an off group leaves out the same-seed products ``Σ_s w_s² Σ_τ c(τ) d_s(τ)²``
    (``d_s`` the term's per-seed difference or curve). Two ways to evaluate it
    for ``B`` weight rows (:meth:`prepare`), equal to round-off:

    * ``"forms"`` (:class:`_Forms`): build the ``(S, S)`` matrices ``M_j(e)``
      and take ``w·M·w``: ``O(S²)`` per row and exponent, cheapest for few seeds.
    * ``"sums"`` (:class:`_WeightedSums`): interpolation is linear in the data,
      so ``X_k`` is the interpolation of the weighted sums
      ``Y_k(t) = Σ_s w_s data_{k,s}(t)``; one ``(T, S)·(S, B)`` product per weight
      set leaves ``O(G)`` work per row, exponent and term, whatever ``S``.
    """

    def __init__(self, data, alive, steps, values, over, reference, grid, method):
        self.data = np.where(alive[..., None], data, 0.0)  # (K, S, T), dead replicas zeroed
        self.alive = alive
        self.steps = steps
        self.values = values
        self.over = over
        self.reference = reference
        self.grid = grid
        self.method = method
        K = len(values)
        # Terms: (kind, k, k', u mask, v mask, off-diagonal only); grouped by denominator.
        terms = []
        if method == "paired":
            for k in range(K):
                for k2 in range(k + 1, K):
                    m = alive[k] & alive[k2]
                    terms.append(("pair", k, k2, m, m, True))
        else:
            off = method == "independent"
            for k in range(K):
                terms.append(("self", k, k, alive[k], alive[k], off))
            for k in range(K):
                for k2 in range(k + 1, K):
                    terms.append(("cross", k, k2, alive[k], alive[k2], False))
        groups: dict[tuple, list] = {}
        for term in terms:
            u, v = sorted((term[3].tobytes(), term[4].tobytes()))
            groups.setdefault((u, v, term[5]), []).append(term)
        self.groups = list(groups.values())
        self.u = np.array([g[0][3] for g in self.groups], float)  # (J, S)
        self.v = np.array([g[0][4] for g in self.groups], float)
        self.off = np.array([g[0][5] for g in self.groups], bool)
        # Units: the weighted sums X_k the terms read, one per (value, seed mask): a pair
        # term sums over the seeds alive at both values, the others over k's survivors.
        self.units: list[tuple[int, np.ndarray]] = []
        self.unit_of: list[tuple[int, int]] = []  # per term, in group order: units of (k, u) and (k', v)
        found: dict[tuple, int] = {}
        for group in self.groups:
            for _, k, k2, u, v, _ in group:
                pair = []
                for kk, mask in ((k, u), (k2, v)):
                    key = (kk, mask.tobytes())
                    if key not in found:
                        found[key] = len(self.units)
                        self.units.append((kk, mask.astype(float)))
                    pair.append(found[key])
                self.unit_of.append((pair[0], pair[1]))
        self.tables = [_padded(self.data[k].T) for k in range(K)]  # per-seed curves, (T + 1, S)

    def route(self) -> str:
        """``"forms"`` or ``"sums"``: the cheaper evaluation for this problem (class docstring)."""
        S = self.data.shape[1]
        forms = len(self.groups) * S * S  # w·M_j·w per row and exponent
        sums = self.grid.size * (len(self.units) + len(self.unit_of))  # interpolations and products
        return "forms" if forms <= _FORMS_RATIO * sums else "sums"

    def lattice(self, exponents: np.ndarray) -> _Lattice:
        """Grid points in every value's raw steps for ``(E,)`` exponents."""
        T = self.steps.size
        t0, t1 = self.steps[0], self.steps[-1]
        factor = (self.values[:, None] / self.reference) ** (SIGN[self.over] * exponents[None, :])  # (K, E)
        raw_t = self.grid[None, None, :] / factor[..., None]  # (K, E, G) raw step of each grid point
        # Same tolerance as comparing τ = f·t against the grid (round-off at the span's ends).
        covered = (raw_t >= t0 * (1 - 1e-12)) & (raw_t <= t1 * (1 + 1e-12))
        q = np.clip(raw_t, t0, t1)
        idx = np.clip(np.searchsorted(self.steps, q, side="right") - 1, 0, T - 2)
        frac = (q - self.steps[idx]) / (self.steps[idx + 1] - self.steps[idx])
        n = covered.sum(axis=0)  # (E, G)
        norm = np.where(n >= 2, n - 1, 0).sum(axis=-1).astype(float)
        inv_n = np.where(n >= 2, 1.0 / np.maximum(n, 1), 0.0)
        return _Lattice(np.where(covered, idx, T), np.where(covered, frac, 0.0), covered, n, inv_n, norm)

    def interpolate(self, lat: _Lattice) -> np.ndarray:
        """Each replica's curve on the grid: ``(K, E, S, G)`` values, 0 where its value does not cover τ."""
        x = np.stack([_on_grid(*self.tables[k], lat.idx[k], lat.frac[k]) for k in range(len(self.values))])
        return np.moveaxis(x, -1, 2)

    def forms(self, exponents: np.ndarray):
        """``(J, E, S, S)`` quadratic forms ``M_j`` and ``(E,)`` normalizers ``Σ_τ (n(τ) − 1)``."""
        lat = self.lattice(exponents)
        x, covered, n, inv_n = self.interpolate(lat), lat.covered, lat.n, lat.inv_n
        S = self.data.shape[1]
        mats = np.zeros((len(self.groups), exponents.size, S, S))
        for j, group in enumerate(self.groups):
            for kind, k, k2, u, _v, _ in group:
                if kind == "pair":
                    both = covered[k] & covered[k2]
                    d = (x[k] - x[k2]) * u[None, :, None]  # (E, S, G)
                    mats[j] += np.matmul(d * (inv_n * both)[:, None, :], d.transpose(0, 2, 1))
                elif kind == "self":
                    xk = x[k] * u[None, :, None]
                    mats[j] += np.matmul(xk * ((n - 1) * inv_n * covered[k])[:, None, :], xk.transpose(0, 2, 1))
                else:  # cross: −2/n · x̄_k x̄_k', symmetrized
                    both = covered[k] & covered[k2]
                    c = np.matmul(x[k] * (inv_n * both)[:, None, :], x[k2].transpose(0, 2, 1))
                    mats[j] -= c + c.transpose(0, 2, 1)
        diag = np.arange(S)
        for j in map(int, np.nonzero(self.off)[0]):
            mats[j][:, diag, diag] = 0.0  # the U-statistic: products of distinct seeds only
        return mats, lat.norm

    def denominators(self, weights: np.ndarray) -> np.ndarray:
        """``(B, J)`` denominators for ``(B, S)`` seed weights."""
        wu, wv = weights @ self.u.T, weights @ self.v.T
        same = (weights**2) @ (self.u * self.v).T
        return wu * wv - self.off[None, :] * same

    def same_seed(self, exponents: np.ndarray) -> np.ndarray:
        """``(J, E, S)``: each seed's own product ``Σ_τ c(τ) d_s(τ)²`` summed over an off group's terms.

        ``w·M_j·w`` of an off group leaves out ``Σ_s w_s² same[j, e, s]`` (zero for other groups).
        """
        K, S, G = len(self.values), self.data.shape[1], self.grid.size
        out = np.zeros((len(self.groups), exponents.size, S))
        if not self.off.any():
            return out
        step = min(exponents.size, max(1, _BLOCK // (G * S)))
        xs, tmp = np.empty((K, step, G, S)), np.empty((step, G, S))
        for lo in range(0, exponents.size, step):
            hi = min(lo + step, exponents.size)
            lat = self.lattice(exponents[lo:hi])
            x = xs[:, : hi - lo]
            for k in range(K):
                _on_grid(*self.tables[k], lat.idx[k], lat.frac[k], x[k], tmp[: hi - lo])
            d = tmp[: hi - lo]
            for j in np.nonzero(self.off)[0]:
                for kind, k, k2, u, _, _ in self.groups[j]:
                    if kind == "pair":
                        np.subtract(x[k], x[k2], out=d)
                        c = lat.inv_n * (lat.covered[k] & lat.covered[k2])
                    else:  # self (cross terms are never in an off group)
                        np.copyto(d, x[k])
                        c = (lat.n - 1) * lat.inv_n * lat.covered[k]
                    d *= u
                    out[j, lo:hi] += _weighted_sum(c, d, d)
        return out

    def prepare(self, weights: np.ndarray, dens: np.ndarray, route: str | None = None):
        """An evaluator of the scores of ``(B, S)`` weight rows (``(B, J)`` ``dens``) at any exponents.

        Args:
            route: ``"forms"``, ``"sums"`` or ``None`` (:meth:`route`).

        Returns:
            :class:`_Forms` or :class:`_WeightedSums`.
        """
        route = route or self.route()
        return (_Forms if route == "forms" else _WeightedSums)(self, weights, dens)

    def scores(self, exponents: np.ndarray, weights: np.ndarray, dens: np.ndarray, route: str | None = None):
        """``(B, E)`` scores (not yet divided by the variance scale) for ``(B, S)`` weights.

        ``inf`` where no two curves overlap; ``dens`` from :meth:`denominators`.
        """
        return self.prepare(weights, dens, route).scores(exponents)


class _Forms:
    """Scores as ``w·M·w`` with the ``(S, S)`` forms of :meth:`_Scorer.forms`; for few seeds."""

    def __init__(self, scorer: _Scorer, weights: np.ndarray, dens: np.ndarray):
        self.scorer, self.weights, self.dens = scorer, weights, dens

    def rows(self, rows: np.ndarray) -> _Forms:
        """The evaluator of a subset of the weight rows."""
        return _Forms(self.scorer, self.weights[rows], self.dens[rows])

    def scores(self, exponents: np.ndarray) -> np.ndarray:
        """``(B, E)`` scores at ``(E,)`` exponents."""
        out = np.empty((self.weights.shape[0], exponents.size))
        for lo in range(0, exponents.size, _CHUNK):
            mats, norm = self.scorer.forms(exponents[lo : lo + _CHUNK])
            total = np.zeros((norm.size, self.weights.shape[0]))  # (E, B)
            for j in range(mats.shape[0]):
                quad = np.einsum("ebs,bs->eb", self.weights @ mats[j], self.weights)  # w·M·w per row
                total += quad / self.dens[:, j]
            norm = norm[:, None]
            out[:, lo : lo + _CHUNK] = np.where(norm > 0, total / np.where(norm > 0, norm, 1.0), np.inf).T
        return out


class _WeightedSums:
    """Scores from the interpolated weighted sums ``X_k`` (:class:`_Scorer`); cost independent of ``S``.

    Rows are taken in chunks whose tables (``Y = Σ_s w_s m_s data_{k,s}`` per
    unit, value ``k`` and mask ``m``, with its step differences, each ``(T + 1, R)``)
    stay within ``_TABLES`` numbers, so long recordings do not multiply memory by ``B``.
    """

    def __init__(self, scorer: _Scorer, weights: np.ndarray, dens: np.ndarray):
        self.scorer, self.weights, self.dens = scorer, weights, dens

    def rows(self, rows: np.ndarray) -> _WeightedSums:
        """The evaluator of a subset of the weight rows."""
        return _WeightedSums(self.scorer, self.weights[rows], self.dens[rows])

    def scores(self, exponents: np.ndarray) -> np.ndarray:
        """``(B, E)`` scores at ``(E,)`` exponents."""
        sc = self.scorer
        B, G = self.weights.shape[0], sc.grid.size
        same = sc.same_seed(exponents)  # (J, E, S)
        R = min(B, max(1, _TABLES // (2 * len(sc.units) * (sc.steps.size + 1))))  # rows per chunk
        # Blocks of exponents whose (E, G, R) interpolated sums stay small (cache, memory);
        # the buffers are reused from block to block (fresh large arrays cost page faults).
        step = min(exponents.size, max(1, _BLOCK // (G * R)))
        out = np.empty((B, exponents.size))
        for r0 in range(0, B, R):
            w = self.weights[r0 : r0 + R]
            if r0 == 0 or w.shape[0] != R:
                ys, work = np.empty((len(sc.units), step, G, w.shape[0])), np.empty((step, G, w.shape[0]))
            tables = [_padded(sc.data[k].T @ (w * mask).T) for k, mask in sc.units]  # (T, S)·(S, R)
            w2, dens = w**2, self.dens[r0 : r0 + R]
            for lo in range(0, exponents.size, step):
                hi = min(lo + step, exponents.size)
                nums, norm = self._sums(exponents[lo:hi], tables, ys[:, : hi - lo], work[: hi - lo])
                total = np.zeros((hi - lo, w.shape[0]))  # (E, R)
                for j, num in enumerate(nums):
                    if sc.off[j]:
                        num -= same[j, lo:hi] @ w2.T
                    total += num / dens[:, j]
                norm = norm[:, None]
                out[r0 : r0 + R, lo:hi] = np.where(norm > 0, total / np.where(norm > 0, norm, 1.0), np.inf).T
        return out

    def _sums(self, exponents, tables, ys, tmp) -> tuple[list[np.ndarray], np.ndarray]:
        """Per group, ``(E, R)`` numerators without the same-seed products, and ``(E,)`` normalizers.

        ``tables``: a chunk's weighted sums; ``ys`` (``(U, E, G, R)``) and ``tmp`` (``(E, G, R)``): buffers.
        """
        sc = self.scorer
        lat = sc.lattice(exponents)
        cov, inv_n = lat.covered, lat.inv_n
        for i, ((k, _), (table, diff)) in enumerate(zip(sc.units, tables)):
            _on_grid(table, diff, lat.idx[k], lat.frac[k], ys[i], tmp)
        nums = []
        terms = iter(sc.unit_of)
        for group in sc.groups:
            num = np.zeros((exponents.size, tmp.shape[-1]))
            for kind, k, k2, *_ in group:
                a, b = next(terms)
                if kind == "pair":
                    np.subtract(ys[a], ys[b], out=tmp)
                    num += _weighted_sum(inv_n * (cov[k] & cov[k2]), tmp, tmp)
                elif kind == "self":
                    num += _weighted_sum((lat.n - 1) * inv_n * cov[k], ys[a], ys[a], tmp)
                else:  # cross: −2/n · X_k X_k'
                    num -= 2 * _weighted_sum(inv_n * (cov[k] & cov[k2]), ys[a], ys[b], tmp)
            nums.append(num)
        return nums, lat.norm
