"""The compiled backend of the two-layer engine: SGD steps and recorded instruments as numba loops.

The default wherever it applies (``[train] fused = true``, noise = "sgd", on the
CPU, numba importable; :func:`applies`); the torch reference
(:class:`thermosgd.twolayer.engine.TorchBackend`: :func:`~thermosgd.twolayer.steps.sgd_step`
plus :func:`~thermosgd.twolayer.measure.measure`) is its twin in the tests and runs
everywhere else, and with ``fused = false``. If numba fails to import, the torch
path runs and :func:`applies` says so once on stderr.

Here the parameters of all replicas live, for the whole run, in the kernels'
layout, chosen by :func:`ensemble`: for small nets (:class:`LaneEnsemble`) blocks
of :data:`LANES` replicas, replicas innermost, so the loops over them are
SIMD-vectorized, one replica per lane; for large nets (:class:`RowEnsemble`)
torch's own layout, one replica at a time along W's rows. One numba-compiled
call (:mod:`thermosgd.twolayer._kernels`) runs every step between two recorded
steps (forward, hand-written backward of Eq. 13/16, in-place update) for a range
of replicas, so their weights stay in cache for all those steps; ranges are
split over threads (numba releases the GIL; replicas never mix, so the thread
count does not change a single bit). The instruments of a recorded step are
compiled too: the cheap ones (‖V‖, ‖W‖, mean b, and for Gaussian inputs the
exact activation rate; torch reductions for large nets) and the probe-set ones
(loss, error, gradient variances, the counted activation rate; large nets leave
their two products over the probe set to torch's batched matmul). Runs with a
held-out set compute their probe-step instruments with the reference
:func:`~thermosgd.twolayer.measure.measure`.

It consumes exactly the samples the reference consumes (the same CPU-drawn
chunks, in the same order), so per-replica random streams are unchanged. It is
equal to the reference to floating-point tolerance, not bit-identical: the sums
run in another order, and ‖W_i‖ is recomputed from W at recorded steps instead
of being tracked incrementally. numba's on-disk cache goes to :func:`cache_dir`
(a user cache folder unless ``NUMBA_CACHE_DIR`` is set), never into the source tree.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from thermosgd.config import SweepConfig
from thermosgd.errors import UsageError
from thermosgd.twolayer.compiled import available, cache_dir  # noqa: F401 (cache_dir: where this backend caches)
from thermosgd.twolayer.compiled import kernels as _kernels
from thermosgd.twolayer.lanes import LANES
from thermosgd.twolayer.measure import ProbeSet, measure
from thermosgd.twolayer.params import Params
from thermosgd.twolayer.steps import frozen_scale, gaussian_weights, gd_weights


def require() -> None:
    """UsageError (one line) when numba is missing."""
    if not available():
        raise UsageError("the compiled kernels need numba, which could not be imported: pip install numba")


#: Noise models the compiled kernels run (the others take the torch path whatever ``fused`` says).
NOISES = ("sgd", "gd", "gaussian", "frozen")

_said_fallback = False


def applies(cfg: SweepConfig) -> bool:
    """Whether ``train(cfg)`` runs the compiled kernels: ``[train] fused`` on, a noise model they
    cover on the CPU, and numba importable (if it is not, says so once per process on stderr)."""
    global _said_fallback
    t = cfg.train
    if not (t.fused and t.noise in NOISES and t.device == "cpu"):
        return False
    if available():
        return True
    if not _said_fallback:
        _said_fallback = True
        print(
            "thermosgd: numba could not be imported; training on the torch reference path instead "
            "(same random numbers, several times slower; pip install numba, or set [train] fused = false)",
            file=sys.stderr,
        )
    return False


_POOL: ThreadPoolExecutor | None = None


def release_threads() -> None:
    """End the kernels' worker threads (a training call ends with this: a process that forks
    afterwards, as ``reproduce``'s side process does, must have no other thread)."""
    global _POOL, _SPARE
    for pool in (_POOL, _SPARE):
        if pool is not None:
            pool.shutdown(wait=True)
    _POOL = _SPARE = None


#: Multiply-adds per call below which one thread is faster than waking others (measured:
#: the cheap instruments of 1024 replicas of 10×10, 10⁵ multiply-adds, took 0.1 ms on one
#: thread and 1 ms on two of a busy 2-core machine).
_MIN_PARALLEL_WORK = 1 << 20


def _pool(threads: int) -> ThreadPoolExecutor:
    """The kernels' worker threads, at least ``threads`` of them (made or grown on demand)."""
    global _POOL
    if _POOL is None or _POOL._max_workers < threads:
        if _POOL is not None:  # idle: every call waits for its items before returning
            _POOL.shutdown(wait=True)
        _POOL = ThreadPoolExecutor(max_workers=max(threads, 2), thread_name_prefix="thermosgd-fused")
    return _POOL


def _parallel(fn, blocks: int, threads: int, work: int) -> None:
    """``fn(k0, k1)`` over contiguous ranges of ``blocks`` blocks, on up to ``threads`` threads.

    ``work`` (multiply-adds of the whole call) below :data:`_MIN_PARALLEL_WORK` runs on one.
    """
    parts = max(1, min(threads, blocks, 1 + work // _MIN_PARALLEL_WORK))
    if parts == 1:
        fn(0, blocks)
        return
    pool = _pool(parts)
    edges = [blocks * i // parts for i in range(parts + 1)]
    for f in [pool.submit(fn, edges[i], edges[i + 1]) for i in range(parts)]:
        f.result()


#: Multiply-adds per item of :func:`_queue` at least (about 0.2 ms here): each item costs a
#: kernel call from Python, about 15 µs.
_MIN_ITEM_WORK = 1 << 21

#: Multiply-adds per call below which :func:`_queue` splits it as :func:`_parallel` does (about
#: 1.5 ms here): the gaussian control's one-step calls (6.5 M on the fig3 grid) ran 5–10% slower
#: through the queue than split so (bench_controls.py, 2026-12-04).
_MIN_QUEUE_WORK = 1 << 24


def _queue(fn, blocks: int, threads: int, work: int, spare: int = 0) -> None:
    """``fn(k0, k1)`` over items of contiguous blocks (of at least :data:`_MIN_ITEM_WORK`), on up to
    ``threads`` threads (this one among them) and ``spare`` more at the lowest priority
    (:func:`_spare_pool`), each taking the next item from one counter when done with the last.

    Unlike :func:`_parallel`'s fixed shares, a thread held up (by the engine's drawing thread,
    or another job, taking its core) delays only the item it holds: the others take the rest.
    A call of less ``work`` (multiply-adds) than :data:`_MIN_QUEUE_WORK` goes to :func:`_parallel`.
    """
    if work < _MIN_QUEUE_WORK:
        _parallel(fn, blocks, threads, work)
        return
    per = max(1, -(-blocks * _MIN_ITEM_WORK // work))
    items = -(-blocks // per)
    workers = min(threads + spare, items)
    if workers <= 1:
        fn(0, blocks)
        return
    counter = itertools.count()  # next() on it is atomic under the GIL: each item is taken once

    def take() -> None:
        while (i := next(counter)) < items:
            fn(i * per, min(blocks, (i + 1) * per))

    normal = min(threads, workers) - 1
    helpers = [_pool(normal).submit(take) for _ in range(normal)]
    helpers += [_spare_pool(workers - 1 - normal).submit(take) for _ in range(workers - 1 - normal)]
    take()
    for f in helpers:
        f.result()


_SPARE: ThreadPoolExecutor | None = None


def _spare_pool(threads: int) -> ThreadPoolExecutor:
    """Worker threads at the lowest scheduling priority (nice 19, where the OS sets it per thread):
    they run when a core would otherwise idle, never ahead of the engine's drawing thread."""
    global _SPARE
    if _SPARE is None or _SPARE._max_workers < threads:
        if _SPARE is not None:
            _SPARE.shutdown(wait=True)
        _SPARE = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="thermosgd-spare", initializer=_nice)
    return _SPARE


def _nice() -> None:
    """This thread at nice 19 (Linux sets the priority of one thread by its id; elsewhere nothing)."""
    if sys.platform.startswith("linux"):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


def _probe_values(
    vals: torch.Tensor, var_W: torch.Tensor, batch_size: torch.Tensor, *, N: int, M: int, bias: bool
) -> dict[str, torch.Tensor]:
    """A probe kernel's rows as :func:`~thermosgd.twolayer.measure.probe_metrics`' instruments, each (R,).

    ``vals`` (6, R): activation rate, loss, error, the per-sample gradient
    variance of V summed over entries, a row for W that only the lane kernel
    fills with its variance (hence ``var_W``, (R,), given apart), and b's.
    Normalized per entry and by each replica's |B| (``batch_size``, (R,)).
    """
    bsz = batch_size.to(vals.dtype)
    var_V, var_b = vals[3], vals[5]
    n_b = N if bias else 0
    total = var_V + var_W + (var_b if n_b else 0)
    return {
        "activation_rate": vals[0],
        "loss": vals[1],
        "error": vals[2],
        "grad_var_V": var_V / (N * bsz),
        "grad_var_W": var_W / (N * M * bsz),
        "grad_var_b": var_b / (N * bsz),
        "grad_var": total / ((N + N * M + n_b) * bsz),
    }


#: Largest copy of the probe set in the lanes' layout (each lane's own probe samples side by side, read
#: as vectors instead of gathered from 64 seeds' sets per sample); larger grids are done in groups of
#: blocks, each group's copy made per call.
_PROBE_LAYOUT_BYTES = 64 << 20


#: Inputs from which replicas run one at a time along W's rows (:class:`RowEnsemble`)
#: instead of in SIMD lanes (:class:`LaneEnsemble`); see :func:`ensemble`.
ROW_INPUTS = 32


def ensemble(p: Params, wl: torch.Tensor, stream: np.ndarray, many_samples: bool = False):
    """The kernels' state for ``p``: lanes of replicas for small nets, rows of W for large ones.

    With M ≥ :data:`ROW_INPUTS` inputs a row of W fills SIMD registers by itself,
    so one replica at a time keeps its W in cache and skips inactive units' rows;
    below, replicas side by side in lanes vectorize better (both measured in
    ``benchmarks/bench_engine.py``). With ``many_samples`` (the G-sample noise
    models) the replicas that read one sample stream step together, as matrix products over
    tiles of samples (:func:`~thermosgd.twolayer._kernels.sample_steps`), for every net size.
    """
    if many_samples or p.W.shape[2] >= ROW_INPUTS:
        return RowEnsemble(p, wl, stream, many_samples)
    return LaneEnsemble(p, wl, stream)


class RowEnsemble:
    """R replicas' W, b, V in torch's own layout, shared with ``p`` (no copies).

    The probe-set instruments of large nets do their two products over the probe
    set (pre-activations, mean gradient of W) as torch's batched matrix products,
    which beat a compiled loop there, and everything per sample in one compiled
    pass (:meth:`probe`).
    """

    def __init__(self, p: Params, wl: torch.Tensor, stream: np.ndarray, many_samples: bool = False):
        self.many_samples = many_samples  # steps through _kernels.sample_steps, a group of replicas at a time
        for t in (p.W, p.b, p.V):
            if not t.is_contiguous():
                raise ValueError("RowEnsemble needs contiguous parameters")  # init_ensemble makes them so
        self.p = p
        self.W, self.b, self.V = p.W.numpy(), p.b.numpy(), p.V.numpy()  # views: updates land in p
        self.wl = wl.detach().clone().contiguous().numpy()
        self.stream = np.ascontiguousarray(stream, dtype=np.int64)
        self.R = self.W.shape[0]
        # The G-sample kernel steps the replicas of one stream together (their first layers as one
        # matrix): group g is order[starts[g]:starts[g + 1]], in replica order, reading gstream[g].
        self.order = np.argsort(self.stream, kind="stable")
        self.starts = np.flatnonzero(np.r_[True, np.diff(self.stream[self.order]) != 0, True])
        self.gstream = self.stream[self.order[self.starts[:-1]]]

    def store(self, p: Params) -> None:
        """Nothing to copy: the arrays are views of ``p``'s tensors."""
        assert p is self.p

    def steps(
        self,
        xs: np.ndarray,
        ys: np.ndarray,
        c0: int,
        n: int,
        *,
        loss: str,
        bias: bool,
        threads: int,
        noise: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """As :meth:`LaneEnsemble.steps`; ``noise`` = (zs (chunk, streams, P), η·scale (R, P)) adds
        "frozen"'s noise after each step (G-sample kernel only)."""
        k = _kernels()
        if self.many_samples:
            groups = (self.order, self.starts, self.gstream)
            zs, zscale = noise if noise is not None else (np.empty((0, 0, 0), self.W.dtype), self.W[:0, 0])
            N, M = self.W.shape[1:]
            T = k.sample_tile(self.starts, N, M, ys.shape[2])  # the same tiles however groups are split
            # Groups from a queue, and a spare worker at the lowest priority: the engine's drawing
            # thread needs its core only while it draws (0.75 ms of CPU per fig3 step, the kernel
            # 1.1 ms), and the spare takes that core when it would idle, never ahead of the drawing
            # (docs/benchmarks.md, the controls).
            _queue(
                lambda g0, g1: k.sample_steps(
                    self.W, self.b, self.V, xs, ys, self.wl, *groups, c0, n, loss == "mse", bias, g0, g1, zs, zscale, T
                ),
                len(self.gstream),
                threads,
                self.W.size * n * ys.shape[2],
                spare=1,
            )
            return
        kernel = k.row_steps1 if ys.shape[2] == 1 else k.row_steps
        _parallel(
            lambda r0, r1: kernel(
                self.W, self.b, self.V, xs, ys, self.wl, self.stream, c0, n, loss == "mse", bias, r0, r1
            ),
            self.R,
            threads,
            self.W.size * n * ys.shape[2],
        )

    def cheap(self, threads: int) -> dict[str, torch.Tensor]:
        """As :meth:`LaneEnsemble.cheap`, computed by torch on the shared tensors."""
        p = self.p
        rows = p.W.norm(dim=-1)
        return {
            "v_norm": p.V.norm(dim=-1),
            "w_norm": rows.norm(dim=-1),
            "bias_mean": p.b.mean(-1),
            "activation_rate": torch.special.ndtr(p.b / rows).mean(-1),
            "finite_sum": p.V.sum(-1) + p.b.sum(-1) + p.W.sum((-1, -2)),
        }

    def probe(
        self,
        px: torch.Tensor,
        py: torch.Tensor,
        batch_size: torch.Tensor,
        *,
        loss: str,
        bias: bool,
        grads: bool,
        threads: int,
    ) -> dict[str, torch.Tensor]:
        """As :meth:`LaneEnsemble.probe`."""
        p, R = self.p, self.R
        S = px.shape[0]
        seed = np.arange(R) % S
        if getattr(self, "_px", (None,))[0] is not px:  # the probe set is fixed: expand it once per run
            self._px = (px, px[torch.from_numpy(seed)], (px * px).sum(-1).numpy())
        xr, xx = self._px[1], self._px[2]
        z = torch.baddbmm(p.b.unsqueeze(1), xr, p.W.mT)  # (R, P, N)
        delta = torch.empty_like(z) if grads else z[:, :0]
        out = np.full((6, R), np.nan)
        kernel = _kernels().row_probe
        Zn, Vn, dn, pyn = z.numpy(), self.V, delta.numpy(), np.ascontiguousarray(py.numpy())
        _parallel(
            lambda r0, r1: kernel(Zn, Vn, pyn, seed, xx, loss == "mse", grads, dn, out, r0, r1),
            R,
            threads,
            z.numel() * (2 if grads else 1),
        )
        vals = torch.from_numpy(out).to(p.W.dtype)
        if not grads:
            return {"activation_rate": vals[0]}
        P, N, M = z.shape[1], self.W.shape[1], self.W.shape[2]
        gW = torch.bmm(delta.mT, xr).div_(P)  # mean per-sample gradient of W, (R, N, M)
        var_W = (torch.from_numpy(out[4]) - gW.pow(2).sum((-1, -2)).double()) * (P / (P - 1))
        return _probe_values(vals, var_W.to(p.W.dtype), batch_size, N=N, M=M, bias=bias)

    def freeze(self, bad: np.ndarray) -> None:
        """NaN parameters and zero step weights for the replicas in the (R,) mask ``bad``."""
        if bad.any():
            for a in (self.W, self.b, self.V):
                a[bad] = np.nan
            self.wl[bad] = 0.0

    def set_weights(self, wl: torch.Tensor) -> None:
        """New (R, B) per-sample step weights for the next steps."""
        self.wl = np.ascontiguousarray(wl.numpy())


class LaneEnsemble:
    """R replicas' W, b, V (and per-sample step weights) in the kernels' layout.

    Arrays are ``(NB, ..., LANES)``: replica r is lane r % LANES of block
    r // LANES; padded lanes have step weight 0 (they never move).
    """

    def __init__(self, p: Params, wl: torch.Tensor, stream: np.ndarray):
        """Copy ``p`` (W (R, N, M), b (R, N), V (R, N)) and ``wl`` (R, B) in.

        ``stream`` (R,): the row of the sample chunk each replica reads.
        """
        self.R = p.W.shape[0]
        self.blocks = -(-self.R // LANES)
        self._pad = self.blocks * LANES - self.R
        self.W, self.b, self.V, self.wl = (self._soa(t) for t in (p.W, p.b, p.V, wl))
        self.stream = (
            np.concatenate([stream, np.zeros(self._pad, np.int64)]).astype(np.int64).reshape(self.blocks, LANES)
        )

    def _soa(self, t: torch.Tensor) -> np.ndarray:
        """(R, *shape) → (NB, *shape, LANES), padded lanes zero."""
        t = t.detach().cpu()
        if self._pad:
            t = torch.cat([t, t.new_zeros(self._pad, *t.shape[1:])])
        return t.reshape(self.blocks, LANES, *t.shape[1:]).movedim(1, -1).contiguous().numpy()

    def _aos(self, a: np.ndarray) -> torch.Tensor:
        """Inverse of :meth:`_soa` (a view-based copy source)."""
        t = torch.from_numpy(a).movedim(-1, 1)
        return t.reshape(self.blocks * LANES, *t.shape[2:])[: self.R]

    def store(self, p: Params) -> None:
        """Copy W, b, V back into ``p``'s tensors, in place."""
        for t, a in ((p.W, self.W), (p.b, self.b), (p.V, self.V)):
            t.copy_(self._aos(a))

    def steps(self, xs: np.ndarray, ys: np.ndarray, c0: int, n: int, *, loss: str, bias: bool, threads: int) -> None:
        """Advance every replica by steps ``c0 .. c0 + n`` of a sample chunk, in place.

        Args:
            xs: (streams, chunk, B, M) inputs; ys: (streams, chunk, B) labels (C-contiguous).
            c0, n: the first step within the chunk and the number of steps.
            loss: "bce" or "mse". bias: update b. threads: threads to split blocks over.
        """
        kernel = _kernels().steps
        _parallel(
            lambda k0, k1: kernel(
                self.W, self.b, self.V, xs, ys, self.wl, self.stream, c0, n, loss == "mse", bias, k0, k1
            ),
            self.blocks,
            threads,
            self.W.size * n * xs.shape[2],
        )

    def cheap(self, threads: int) -> dict[str, torch.Tensor]:
        """The cheap instruments, each (R,): ``v_norm``, ``w_norm``, ``bias_mean``,
        ``activation_rate`` (exact for x ~ N(0, I)) and ``finite_sum`` (non-finite
        iff some parameter is)."""
        kernel = _kernels().metrics
        out = np.empty((4, self.blocks, LANES), self.W.dtype)
        ratio = np.empty((self.blocks, self.W.shape[1], LANES), self.W.dtype)
        _parallel(lambda k0, k1: kernel(self.W, self.b, self.V, out, ratio, k0, k1), self.blocks, threads, self.W.size)
        flat = torch.from_numpy(out.reshape(4, -1)[:, : self.R])
        # x ~ N(0, I): unit i is active w.p. Φ(b_i/‖W_i‖), as in measure.measure (torch's ndtr, vectorized).
        rate = torch.special.ndtr(torch.from_numpy(ratio)).mean(1).reshape(-1)[: self.R]
        return {
            "v_norm": flat[0],
            "w_norm": flat[1],
            "bias_mean": flat[2],
            "activation_rate": rate,
            "finite_sum": flat[3],
        }

    def probe(
        self,
        px: torch.Tensor,
        py: torch.Tensor,
        batch_size: torch.Tensor,
        *,
        loss: str,
        bias: bool,
        grads: bool,
        threads: int,
    ) -> dict[str, torch.Tensor]:
        """The probe-set instruments of :func:`thermosgd.twolayer.measure.probe_metrics`, each (R,).

        Args:
            px: (S, P, M) and py: (S, P), the probe set of each seed; replica r uses seed r % S.
            batch_size: (R,) each replica's |B|. loss: "bce" or "mse". bias: b is trained.
            grads: also loss, error and gradient variances (else the activation rate only).
            threads: threads to split blocks over.
        """
        kernel = _kernels().probe
        dt = self.W.dtype
        P, M = px.shape[1], px.shape[2]
        group = max(1, _PROBE_LAYOUT_BYTES // (LANES * P * (M + 1) * self.W.itemsize))
        out = np.empty((6, self.blocks, LANES))
        for g0 in range(0, self.blocks, group):
            g1 = min(self.blocks, g0 + group)
            pxl, pyl = self._lane_probe(px, py, g0, g1)
            _parallel(
                lambda k0, k1: kernel(
                    self.W, self.b, self.V, pxl, pyl, g0, loss == "mse", grads, out, g0 + k0, g0 + k1
                ),
                g1 - g0,
                threads,
                self.W.size * P * (2 if grads else 1) * (g1 - g0) // self.blocks,
            )
        vals = torch.from_numpy(out.reshape(6, -1)[:, : self.R]).to(
            torch.float32 if dt == np.float32 else torch.float64
        )
        if not grads:
            return {"activation_rate": vals[0]}
        return _probe_values(vals, vals[4], batch_size, N=self.W.shape[1], M=self.W.shape[2], bias=bias)

    def _lane_probe(self, px: torch.Tensor, py: torch.Tensor, g0: int, g1: int) -> tuple[np.ndarray, np.ndarray]:
        """Blocks g0..g1's probe sets in the lanes' layout: (g1−g0, P, M, LANES), (g1−g0, P, LANES).

        Lane q of block k is replica k·LANES + q, whose probe set is seed (k·LANES + q) mod S of
        ``px`` (S, P, M), ``py`` (S, P). Kept for the run when all blocks fit in one group.
        """
        cached = getattr(self, "_lane_probe_cache", None)
        if cached is not None and cached[0] is px and cached[1] == (g0, g1):
            return cached[2], cached[3]
        dt = self.W.dtype
        seed = (np.arange(g0 * LANES, g1 * LANES) % px.shape[0]).reshape(g1 - g0, LANES)
        pxl = np.ascontiguousarray(px.numpy()[seed].transpose(0, 2, 3, 1), dtype=dt)
        pyl = np.ascontiguousarray(py.numpy()[seed].transpose(0, 2, 1), dtype=dt)
        if g0 == 0 and g1 == self.blocks:
            self._lane_probe_cache = (px, (g0, g1), pxl, pyl)
        return pxl, pyl

    def freeze(self, bad: np.ndarray) -> None:
        """NaN parameters and zero step weights for the replicas in the (R,) mask ``bad``."""
        if not bad.any():
            return
        idx = np.nonzero(bad)[0]
        k, q = idx // LANES, idx % LANES
        for a in (self.W, self.b, self.V):
            a[k, ..., q] = np.nan
        self.wl[k, :, q] = 0.0

    def set_weights(self, wl: torch.Tensor) -> None:
        """New (R, B) per-sample step weights for the next steps (padded lanes stay 0)."""
        self.wl = self._soa(wl)


class FusedBackend:
    """The compiled backend of :func:`thermosgd.twolayer.engine._integrate` (its ``Backend`` interface).

    The parameters stay in the kernels' layout (:func:`ensemble`) for the whole run;
    they are copied back into ``p`` only where the torch probe-set instruments need
    them (runs with a held-out set, at probe steps). Every noise model is the one
    step kernel with its per-sample weights (:mod:`thermosgd.twolayer.steps`): "sgd"
    and "gd" fixed ones (many steps per call), "gaussian" new ones each step (from
    :func:`~thermosgd.twolayer.steps.gaussian_weights`), "frozen" the "gd" step plus
    :func:`~thermosgd.twolayer.steps.frozen_noise` added to the parameters in the kernel.

    Args:
        cfg: the configuration. p: the initial parameters (R replicas).
        stepper: the engine's step of the configured noise model (its ``noise``,
            ``wl``, ``lr``, ``batch_size``, ``scale`` and ``rates()``).
        stream: (R,) the sample stream of each replica.
        replicate: (streams, ...) → (R, ...), one row per replica.
        probe: the probe set, (R, ...) in replica order. seeds: S (rows r < S of the probe
            set are seeds 0..S−1). threads: threads to split the kernels over.
    """

    by_stream = True

    def __init__(
        self,
        cfg: SweepConfig,
        p: Params,
        stepper,
        stream: np.ndarray,
        replicate,
        probe: ProbeSet,
        seeds: int,
        threads: int,
    ):
        self.p, self.stepper, self.replicate, self.probe, self.threads = p, stepper, replicate, probe, threads
        self.loss, self.bias, self.gaussian = cfg.train.loss, cfg.model.bias, cfg.data.inputs == "gaussian"
        self.noise, G = stepper.noise, cfg.train.gd_batch
        wl = stepper.wl if self.noise == "sgd" else gd_weights(stepper.lr, G)  # "gaussian": replaced each step
        self.ens = ensemble(p, wl, stream, many_samples=self.noise != "sgd")
        self.px, self.py = probe.x[:seeds], probe.y[:seeds]  # each seed's probe set
        self.chunk: tuple = ()

    def start_chunk(self, chunk: tuple) -> None:
        xs, ys, zs = chunk  # (streams, n, batch, M), (streams, n, batch), (n, streams, ·) or None
        self.chunk = (xs.numpy(), ys.numpy(), zs)
        # Overflowed replicas are frozen at chunk starts, as on the torch path.
        self.freeze(torch.from_numpy(~np.isfinite(self.ens.cheap(self.threads)["finite_sum"].numpy())))

    def advance(self, c0: int, n: int) -> None:
        xs, ys, zs = self.chunk
        kw = {"loss": self.loss, "bias": self.bias, "threads": self.threads}
        if self.noise in ("sgd", "gd"):
            self.ens.steps(xs, ys, c0, n, **kw)
            return
        st = self.stepper
        if self.noise == "frozen":  # the "gd" step plus its noise, in the kernel: all n steps in one call
            zscale = np.ascontiguousarray(frozen_scale(st.lr, st.scale).numpy())
            self.ens.steps(xs, ys, c0, n, noise=(zs.numpy(), zscale), **kw)
            return
        for c in range(c0, c0 + n):
            self.ens.set_weights(gaussian_weights(st.lr, st.batch_size, self.replicate(zs[c])))
            self.ens.steps(xs, ys, c, 1, **kw)

    def measure(self, with_probe: bool) -> dict[str, torch.Tensor]:
        ens, probe = self.ens, self.probe
        if with_probe and probe.test_x is not None:  # the reference instruments on p
            ens.store(self.p)
            W = self.p.W
            return measure(
                self.p, W.norm(dim=-1), probe, loss=self.loss, bias=self.bias, gaussian=self.gaussian, with_probe=True
            )
        values = ens.cheap(self.threads)
        del values["finite_sum"]
        if with_probe or not self.gaussian:
            counted = ens.probe(
                self.px,
                self.py,
                probe.batch_size,
                loss=self.loss,
                bias=self.bias,
                grads=with_probe,
                threads=self.threads,
            )
            if self.gaussian:
                del counted["activation_rate"]  # exact for x ~ N(0, I)
            broken = ~torch.isfinite(values["v_norm"] + values["w_norm"] + values["bias_mean"])
            for k in counted:  # as the reference: non-finite parameters give NaN (counts stay finite)
                if k not in ("activation_rate", "error"):
                    counted[k][broken] = float("nan")
            values.update(counted)  # for other inputs the counted rate replaces the Gaussian formula
        return values

    def freeze(self, bad: torch.Tensor) -> None:
        if bool(bad.any()):
            self.ens.freeze(bad.numpy())
            for r in self.stepper.rates():  # the step sizes later weights derive from
                r[bad] = 0.0
