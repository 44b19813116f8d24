"""Vectorized ensemble SGD for the two-layer ReLU net f(x) = V σ(W x + b).

A whole grid of learning rates × batch sizes × seeds is one computation: the
parameters carry a leading replica dim R = L·K·S (lr, batch size, seed) and
every step is a handful of batched tensor ops, with hand-written gradients of
Eq. 13/16 (tested against ``torch.autograd``). Replicas never mix: a diverging
replica (:mod:`~thermosgd.twolayer.divergence`) is frozen and marked, the rest go on.
``[train] noise`` swaps the minibatch step for a control ("gd", "gaussian",
"frozen": :mod:`~thermosgd.twolayer.steps`) that sees G = ``gd_batch`` samples
per step; everything else (initialization, data, measurement) stays the same.

``[train] svag = l`` runs each configured step as l updates of the SVAG process
(:mod:`~thermosgd.twolayer.steps`); records stay at the configured steps.

The pieces, one job each: :mod:`~thermosgd.twolayer.params` (initialization),
:mod:`~thermosgd.twolayer.steps` (the update), :mod:`~thermosgd.twolayer.measure`
(what is recorded; when is a schedule from :mod:`thermosgd.instruments.schedule`),
:mod:`~thermosgd.twolayer.results` (the dataset). This module holds the one loop
(:func:`_integrate`) and its two backends with the same four methods (:class:`Backend`):
the compiled kernels (:class:`thermosgd.twolayer.fused.FusedBackend`, the default on
the CPU wherever they apply) and the torch reference (:class:`TorchBackend`, every
device, ``[train] fused = false``), chosen by a plain if/else.

Shapes used below: L learning rates, K batch sizes, S seeds, B = max batch size,
N hidden units, M inputs, P probe samples.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import xarray as xr

from thermosgd.checks import replica_seeds, require_config, torch_device
from thermosgd.config import SweepConfig
from thermosgd.errors import UsageError
from thermosgd.instruments.schedule import every
from thermosgd.precision import full_float32
from thermosgd.progress import bar as progress_bar
from thermosgd.threads import threads_for
from thermosgd.twolayer import budget, divergence, fused, graphs, philox, workers
from thermosgd.twolayer.data import NOISE, NOISE_INIT, SampleStream, UserData, generator
from thermosgd.twolayer.measure import METRICS, TEST_METRICS, ProbeSet, measure
from thermosgd.twolayer.noise import NormalStreams, per_sample_variance
from thermosgd.twolayer.params import Params, init_ensemble
from thermosgd.twolayer.results import Records, to_dataset
from thermosgd.twolayer.steps import frozen_step, gaussian_step, gd_step, minibatch_weights, sgd_step

_CHUNK = 256  # minibatches drawn per stream at once
# First-layer weights (plus, for the G-sample noise models, per-step intermediates)
# trained together at most (1M float32 = 4 MiB): beyond this the step is bound by
# memory traffic (measured on the fig2-top grid: 162k replica-steps/s with 128
# replicas of 100×100, 103k with 512).
_BLOCK_ENTRIES = 1 << 20
# On a GPU the whole grid should be one computation (each step is a few kernel launches whatever
# the replica count); blocks only bound the memory: 2^28 entries are 1 GiB in float32.
_GPU_BLOCK_ENTRIES = 1 << 28


def train(
    cfg: SweepConfig,
    seeds=None,
    *,
    data=None,
    test_data=None,
    progress: bool = False,
    desc: str | None = None,
    device: str | None = None,
) -> xr.Dataset:
    """Train the grid ``cfg.train.lr × cfg.train.batch_size × seeds`` in one go, under ``cfg.train.noise``.

    Args:
        cfg: validated configuration.
        seeds: the replica seeds to train (default: all of ``cfg.train.seeds``);
            a work unit passes a block of them.
        data: optional (x (n, M), y (n,)) tensors or arrays: train on this finite
            set instead of the configured distribution (needs ``inputs = "file"``
            and ``labels = "file"`` in [data]; without ``data`` those read
            ``[data] file``). The activation rate is then counted on the probe
            set, a fixed subset of ``x``.
        test_data: optional held-out (x, y) for ``test_loss`` / ``test_error``.
        progress: show a progress bar over steps.
        device: "cpu", "cuda" or "cuda:N"; replaces ``cfg.train.device`` (and is
            recorded in the dataset's config). Random numbers are drawn on the
            CPU either way (bit-identical draws); see docs/devices.md.

    Returns:
        Dataset with dims (lr, batch_size, seed, step); see :func:`thermosgd.load`.

    Raises:
        UsageError: bad data, or a grid that would not fit in memory or would
            run longer than 30 days (checked before anything is built).
    """
    require_config(cfg, "train")
    if device is not None and device != cfg.train.device:
        cfg = cfg.replace(train={"device": device})
    torch_device(cfg.train.device, "[train] device" if device is None else "device")
    t = cfg.train
    seeds = list(t.seeds) if seeds is None else replica_seeds(seeds)
    budget.check_train(cfg, len(seeds))
    user = load_user_data(cfg, data, test_data)
    N, M = cfg.model.hidden, cfg.model.inputs
    per_seed = len(t.lr) * len(t.batch_size) * N * M  # W entries per seed
    if t.noise != "sgd":  # the G-sample steps' intermediates (R, G, N) and (R, G, M) dominate
        # (the compiled kernel tiles them: there a seed's samples, shared by its replicas, count once)
        per_seed += (1 if fused.applies(cfg) and t.share_data else len(t.lr) * len(t.batch_size)) * t.gd_batch * (N + M)
    block = max(1, (_BLOCK_ENTRIES if cfg.train.device == "cpu" else _GPU_BLOCK_ENTRIES) // per_seed)
    work = per_seed * min(block, len(seeds)) * (max(t.batch_size) if t.noise == "sgd" else 1)
    # The fused path splits whole multi-step calls over threads: it uses every thread it is given.
    fused_threads = torch.get_num_threads()
    with threads_for(work), full_float32():
        if len(seeds) <= block:
            return _train(cfg, seeds, user, progress=progress, desc=desc, fused_threads=fused_threads)
        # Replicas never interact, so blocks of seeds can run one after another:
        # the same numbers, with each block's weights small enough to stay in cache.
        parts = [
            _train(
                cfg,
                seeds[i : i + block],
                user,
                progress=progress,
                desc=f"{desc or 'train'} [{i // block + 1}/{-(-len(seeds) // block)}]",
                fused_threads=fused_threads,
            )
            for i in range(0, len(seeds), block)
        ]
    out = xr.concat(parts, dim="seed", data_vars="all", coords="different", compat="equals", join="exact")
    out.attrs = parts[0].attrs
    return out


def load_user_data(cfg: SweepConfig, data, test_data) -> UserData | None:
    """The user's data set, from tensors or from ``[data] file``."""
    if cfg.data.inputs != "file":
        if data is not None or test_data is not None:
            raise UsageError('data=... needs [data] inputs = "file" and labels = "file" in the config')
        return None
    if data is None:
        if not cfg.data.file:
            raise UsageError('[data] inputs = "file" needs [data] file = "PATH.npz" (or data=(x, y) in Python)')
        return UserData.from_npz(cfg.data.file, inputs=cfg.model.inputs, loss=cfg.train.loss, dtype=cfg.train.dtype)
    return UserData.from_arguments(data, test_data, inputs=cfg.model.inputs, loss=cfg.train.loss, dtype=cfg.train.dtype)


def _train(
    cfg: SweepConfig,
    seeds,
    user: UserData | None,
    *,
    progress: bool = False,
    desc: str | None = None,
    fused_threads: int = 1,
) -> xr.Dataset:
    """Body of :func:`train` for one block of seeds: initialize, loop, assemble."""
    t = cfg.train
    dtype = torch.float64 if t.dtype == "float64" else torch.float32
    dev = torch.device(t.device)
    L, K, S = len(t.lr), len(t.batch_size), len(seeds)
    # Every random number is drawn on the CPU, as on a CPU-only run, then moved:
    # the draws are bit-identical on every device (only the arithmetic differs).
    p = _to_device(init_ensemble(cfg, seeds, dtype), dev)
    data = _Data(cfg, seeds, user, dtype)
    probe = data.probe_set(dev)
    stepper = _to_device(_stepper(cfg, p, data, S, dtype, dev), dev)

    # SVAG runs l updates per configured step: schedules count updates, records keep configured steps.
    per_step, updates = t.svag, t.svag * t.steps
    record = every(per_step * t.record_every, last=updates)
    probe_due = every(per_step * cfg.probe_every_steps, last=updates)
    records = Records(
        METRICS + (TEST_METRICS if probe.test_x is not None else ()),
        np.array(record.steps(updates)) // per_step,
        L * K * S,
        dtype,
    )
    gaussian = cfg.data.inputs == "gaussian"
    watch = divergence.Watch(t.runaway_factor, L * K * S)
    bar = progress_bar(updates, desc=desc or "train", unit="step", enabled=progress)
    backend: Backend
    if fused.applies(cfg):
        R = L * K * S
        # Replica r reads stream r % S when streams are shared per seed (replica order lr, batch, seed).
        stream = np.arange(R) % (data.S if t.share_data else R)
        backend = fused.FusedBackend(cfg, p, stepper, stream, data.replicate, probe, S, fused_threads)
        data.widen = t.noise == "sgd"  # the G-sample kernel takes narrower draws as they are
    else:
        backend = TorchBackend(cfg, p, data, probe, stepper, _dense(records.steps, t.steps))
    try:
        data.start(stepper.batch, stepper.chunk)
        _integrate(backend, data, stepper, records, watch, bar, record, probe_due, updates, per_step)
    finally:
        data.close()
        fused.release_threads()
    bar.close()
    method = (
        "exact: mean_i Phi(b_i/||W_i||) for x ~ N(0, I)"
        if gaussian
        else f"Monte Carlo on a fixed probe set of {probe.x.shape[1]} samples"
    )
    return to_dataset(
        cfg,
        seeds,
        records,
        watch.step,
        activation_rate_method=method,
        divergence_criterion=divergence.describe(t.runaway_factor),
    )


class Backend(Protocol):
    """What :func:`_integrate` needs of a backend: the torch reference (:class:`TorchBackend`) or the
    compiled kernels (:class:`thermosgd.twolayer.fused.FusedBackend`). Each holds R replicas' parameters
    in its own layout; values are (R,) CPU tensors, masks (R,) bool tensors."""

    by_stream: bool  # sample chunks as (streams, n, ...) rather than (n, streams, ...)

    def start_chunk(self, chunk: tuple) -> None:
        """Take a chunk's (xs, ys, zs), as :meth:`_Data.chunk` and :class:`NormalStreams` draw them,
        and freeze replicas whose parameters overflowed since the last chunk."""

    def advance(self, c0: int, n: int) -> None:
        """Steps ``c0 .. c0 + n`` of the current chunk, for every replica, in place."""

    def measure(self, with_probe: bool) -> dict[str, torch.Tensor]:
        """The recorded instruments now (probe-set ones if ``with_probe``)."""

    def freeze(self, bad: torch.Tensor) -> None:
        """NaN parameters and zero step sizes from here on for the replicas in ``bad``."""


class Samples(Protocol):
    """Where :func:`_integrate` draws its chunks of samples: :class:`_Data`, or the drift runs' stream."""

    def chunk(self, n: int, batch: int, chunk: int, by_stream: bool = False) -> tuple: ...


class Plan(Protocol):
    """What :func:`_integrate` reads of a stepper (:class:`_Stepper`): samples per step, steps per
    chunk, and the normal draws of the noise models that have them."""

    @property
    def batch(self) -> int: ...
    @property
    def chunk(self) -> int: ...
    @property
    def draws(self) -> NormalStreams | None: ...


class Sink(Protocol):
    """Where recorded values go (:class:`~thermosgd.twolayer.results.Records`)."""

    def put(self, i: int, values: dict[str, torch.Tensor]) -> None: ...


class Guard(Protocol):
    """What flags replicas to freeze after a record (:class:`~thermosgd.twolayer.divergence.Watch`)."""

    def update(self, step: int, values: dict[str, torch.Tensor]) -> torch.Tensor: ...


def _integrate(
    backend: Backend,
    data: Samples,
    stepper: Plan,
    records: Sink,
    watch: Guard,
    bar,
    record,
    probe_due,
    updates: int,
    per_step: int,
) -> None:
    """The one training loop: chunks of samples, every step up to the next recorded one per call.

    ``record`` and ``probe_due`` count updates; records and divergence steps are kept in
    configured steps (``per_step`` updates each: SVAG). The next chunk is drawn on a second
    thread while the backend steps (only that thread draws, chunk after chunk, so every
    stream is consumed in the same order as by one thread).
    """

    def measure_at(i: int, step: int) -> None:
        values = backend.measure(probe_due(step))
        records.put(i, values)
        backend.freeze(watch.update(step // per_step, values))  # recorded, then frozen

    def draw(n: int) -> tuple:
        xs, ys = data.chunk(n, stepper.batch, stepper.chunk, by_stream=backend.by_stream)
        return xs, ys, (stepper.draws.next(n) if stepper.draws is not None else None)

    measure_at(0, 0)
    ri, step = 1, 0
    sizes = [min(stepper.chunk, updates - s) for s in range(0, updates, stepper.chunk)]
    with ThreadPoolExecutor(1, thread_name_prefix="thermosgd-data") as pool:
        upcoming = pool.submit(draw, sizes[0])
        for ci, n in enumerate(sizes):
            chunk = upcoming.result()
            if ci + 1 < len(sizes):
                upcoming = pool.submit(draw, sizes[ci + 1])
            backend.start_chunk(chunk)
            c = 0
            while c < n:
                m = 1
                while c + m < n and not record(step + m):
                    m += 1
                backend.advance(c, m)
                c += m
                step += m
                if record(step):
                    measure_at(ri, step)
                    ri += 1
            bar.update(n)


class TorchBackend:
    """The reference: one :class:`_Stepper` step at a time as batched torch ops, on any device.

    With ``track_norms`` (dense recording, noise = "sgd") the running ‖W_i‖² is updated by
    each step, so the exact activation rate at (almost) every step needs no pass over W
    (which for large N·M costs more than the step itself); it is recomputed from W at
    every chunk so rounding cannot accumulate.
    """

    by_stream = False
    #: On a CUDA device, replay the steps between records as CUDA graphs (:mod:`~thermosgd.twolayer.graphs`).
    cuda_graphs = True

    def __init__(self, cfg: SweepConfig, p: Params, data: _Data, probe: ProbeSet, stepper: _Stepper, track_norms):
        self.p, self.data, self.probe, self.stepper = p, data, probe, stepper
        self.loss, self.bias, self.gaussian = cfg.train.loss, cfg.model.bias, cfg.data.inputs == "gaussian"
        self.dev = p.W.device
        self.row_norms2 = p.W.pow(2).sum(-1) if cfg.train.noise == "sgd" and track_norms else None
        self.chunk: tuple = ()
        capture = graphs.capture_for(self.dev) if self.cuda_graphs else None
        self.graphs = None if capture is None else graphs.StepGraphs(self._step, stepper.chunk, capture)
        self.warm = False  # graphs are captured after one eager call has set up the libraries' state

    def start_chunk(self, chunk: tuple) -> None:
        self.chunk = tuple(None if v is None else v.to(self.dev) for v in chunk)  # no copy on the CPU
        if self.row_norms2 is not None:
            torch.sum(self.p.W.pow(2), -1, out=self.row_norms2)
        _freeze_nonfinite(self.p, self.stepper.rates(), self.row_norms2)

    def advance(self, c0: int, n: int) -> None:
        if self.graphs is not None and self.warm:
            try:
                self.graphs.run(self.chunk, c0, n)
                return
            except RuntimeError as err:  # captured nothing was replayed: step eagerly from here on
                graphs.say_fallback(err)
                self.graphs = None
        xs, ys, zs = self.chunk
        for c in range(c0, c0 + n):
            self._step(xs[c], ys[c], None if zs is None else zs[c])
        self.warm = True

    def _step(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor | None) -> None:
        """One step of every replica on one step's samples (per stream: replicated here)."""
        rep = self.data.replicate
        self.stepper.step(self.p, rep(x), rep(y), None if z is None else rep(z), self.row_norms2)

    def measure(self, with_probe: bool) -> dict[str, torch.Tensor]:
        p = self.p
        row_norm = p.W.norm(dim=-1) if self.row_norms2 is None else self.row_norms2.clamp_min(0.0).sqrt()
        values = measure(
            p, row_norm, self.probe, loss=self.loss, bias=self.bias, gaussian=self.gaussian, with_probe=with_probe
        )
        return {k: v.cpu() for k, v in values.items()}  # no copy on the CPU

    def freeze(self, bad: torch.Tensor) -> None:
        _freeze(bad.to(self.dev), self.p, self.stepper.rates(), self.row_norms2)


@dataclass
class _Stepper:
    """One step of the configured noise model for R replicas, and what it needs.

    Attributes:
        noise: ``[train] noise``. loss: "bce" or "mse". bias: b is trained.
        batch: samples per step and replica (max |B| for "sgd", G otherwise).
        chunk: steps whose samples (and normal draws) are drawn at once.
        wl: (R, B) per-sample step weights of "sgd".
        lr, batch_size: (R,) η and |B| of each replica (the other models).
        draws: normal streams ("gaussian": G per step, "frozen": P per step) or None.
        scale: (R, P) √(σ₀²/|B|) of "frozen", else None.
    """

    noise: str
    loss: str
    bias: bool
    batch: int
    chunk: int
    wl: torch.Tensor
    lr: torch.Tensor
    batch_size: torch.Tensor
    draws: NormalStreams | None = None
    scale: torch.Tensor | None = None

    def rates(self) -> list[torch.Tensor]:
        """The step-size tensors (leading replica dim) that freezing a replica zeroes."""
        return [r for r in (self.wl, self.lr, self.scale) if r is not None]

    def step(
        self, p: Params, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor | None, row_norms2: torch.Tensor | None
    ) -> None:
        """Advance every replica by one step: x (R, batch, M), y (R, batch), z (R, G or P) or None."""
        if self.noise == "sgd":
            sgd_step(p.W, p.b, p.V, x, y, self.wl, self.loss, self.bias, row_norms2)
        elif self.noise == "gd":
            gd_step(p.W, p.b, p.V, x, y, self.lr, self.loss, self.bias)
        elif self.noise == "gaussian" and z is not None:
            gaussian_step(p.W, p.b, p.V, x, y, self.lr, self.batch_size, z, self.loss, self.bias)
        elif self.noise == "frozen" and z is not None and self.scale is not None:
            frozen_step(p.W, p.b, p.V, x, y, self.lr, self.scale, z, self.loss, self.bias)
        else:
            raise AssertionError(self.noise)  # config validation lists the models


def _to_device(obj, dev: torch.device):
    """``obj`` (a dataclass of tensors: Params, ProbeSet, _Stepper) with its tensor fields on ``dev``, in place."""
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, torch.Tensor):
            setattr(obj, f.name, v.to(dev))  # the same tensor when already there
    return obj


def _stepper(
    cfg: SweepConfig, p: Params, data: _Data, seeds: int, dtype: torch.dtype, dev: torch.device = torch.device("cpu")
) -> _Stepper:
    """The configured noise model's step, its random streams and, for "frozen", σ₀² at the initial ``p``."""
    t, N, M = cfg.train, cfg.model.hidden, cfg.model.inputs
    G, L, K, svag = t.gd_batch, len(t.lr), len(t.batch_size), t.svag
    # SVAG of the G-sample models (steps module): η → η/l, and |B| → |B|/l scales their noise term by √l.
    lr = torch.tensor(t.lr, dtype=dtype).view(L, 1, 1).expand(L, K, seeds).reshape(-1).clone().div_(svag)
    bs = torch.tensor(t.batch_size, dtype=dtype).view(1, K, 1).expand(L, K, seeds).reshape(-1).clone().div_(svag)
    # "sgd" draws whole chunks of _CHUNK minibatches (two per SVAG update); the G-sample models about
    # 2^18 inputs per stream.
    sgd_batch = max(t.batch_size) * (1 if svag == 1 else 2)
    batch, chunk = (sgd_batch, _CHUNK) if t.noise == "sgd" else (G, max(1, min(_CHUNK, (1 << 18) // (G * M))))
    out = _Stepper(
        t.noise, t.loss, cfg.model.bias, batch, chunk, minibatch_weights(t.lr, t.batch_size, seeds, dtype, svag), lr, bs
    )
    if t.noise in ("gaussian", "frozen"):
        size = G if t.noise == "gaussian" else N * M + 2 * N
        out.draws = NormalStreams(data.generators(NOISE), size, chunk, dtype)
    if t.noise == "frozen":
        x0, y0 = (v.to(dev) for v in data.initial_sample(G))  # (R, G, M), (R, G), drawn on the CPU
        out.scale = (
            per_sample_variance(p.W, p.b, p.V, x0, y0, t.loss, cfg.model.bias) / bs.to(dev).unsqueeze(-1)
        ).sqrt_()
    return out


def _dense(steps: np.ndarray, total: int) -> bool:
    """Whether a schedule records on average at least every 4th step (then ‖W_i‖ is tracked)."""
    return 4 * (len(steps) - 1) >= total


def _freeze_nonfinite(p: Params, rates, row_norms2: torch.Tensor | None) -> None:
    """Freeze replicas whose parameters overflowed between records (see :func:`_freeze`).

    This only saves work and keeps inf − inf out of the arithmetic; the replica is
    marked diverged at the next recorded step, where its norms read NaN.
    """
    norms = p.V.sum(-1) + p.b.sum(-1) + (p.W.sum((-1, -2)) if row_norms2 is None else row_norms2.sum(-1))
    _freeze(~torch.isfinite(norms), p, rates, row_norms2)


def _freeze(bad: torch.Tensor, p: Params, rates, row_norms2: torch.Tensor | None) -> None:
    """Freeze the replicas in the (R,) mask ``bad``: NaN parameters from here on, step sizes 0.

    ``rates`` are the step-size tensors with a leading replica dim. Replicas never
    mix, so the others go on unchanged.
    """
    if bool(bad.any()):
        for x in (p.W, p.b, p.V) if row_norms2 is None else (p.W, p.b, p.V, row_norms2):
            x[bad] = float("nan")
        for r in rates:
            r[bad] = 0.0


class _Data:
    """The seeded sample streams of one block of seeds and its probe set.

    With ``share_data`` there is one stream per seed, replayed for every
    (lr, batch size); otherwise one per replica. The noise draws of the noise
    models follow the same rule (common random numbers across the grid, or not).
    """

    def __init__(self, cfg: SweepConfig, seeds, user: UserData | None, dtype: torch.dtype):
        t = cfg.train
        self.L, self.K, self.S = len(t.lr), len(t.batch_size), len(seeds)
        self.shared, self.batch_sizes, self.dtype = t.share_data, t.batch_size, dtype
        self.draw_dtype = _draw_dtype(cfg, dtype, user)
        # Chunks widened to ``dtype`` here; the compiled G-sample kernel widens them itself (fused.FusedBackend).
        self.widen = True
        # The G-sample models draw G·M fresh inputs per step and stream: Gaussian ones from Philox
        # (twolayer.philox), which here draws them at about twice the rate of torch's sampler.
        counter = t.noise != "sgd"
        per_seed = [SampleStream(cfg, t.seed, s, dtype=dtype, dataset=user, counter_inputs=counter) for s in seeds]
        if self.draw_dtype != dtype:  # the same coordinates (so the same generators), drawn narrower
            per_seed_draws = [
                SampleStream(cfg, t.seed, s, dtype=self.draw_dtype, counter_inputs=counter) for s in seeds
            ]
        else:
            per_seed_draws = per_seed
        # Coordinates (master, seed[, lr index, batch index]) of each stream.
        self.coords: list[tuple[int, ...]] = (
            [(t.seed, s) for s in seeds]
            if self.shared
            else [(t.seed, s, li, ki) for li in range(self.L) for ki in range(self.K) for s in seeds]
        )
        self.streams = (
            per_seed_draws
            if self.shared
            else [
                SampleStream(cfg, t.seed, *c[1:], dtype=self.draw_dtype, dataset=user, counter_inputs=counter)
                for c in self.coords
            ]
        )
        self.probes = per_seed  # the probe set is per seed in either case
        self.draw_threads = draw_threads(cfg.train.device, len(self.streams))
        self.draw_processes = draw_processes(cfg.train.device, len(self.streams))
        self._workers: workers.StreamWorkers | None = None

    def _per_seed(self, v: torch.Tensor) -> torch.Tensor:
        """(S, ...) per-seed tensor → (L·K·S, ...) in replica order (lr, batch, seed)."""
        return v.unsqueeze(0).expand(self.L * self.K, *v.shape).reshape(-1, *v.shape[1:])

    def replicate(self, v: torch.Tensor) -> torch.Tensor:
        """(streams, ...) → (R, ...): one row per replica."""
        return self._per_seed(v) if self.shared else v

    def generators(self, stream: int) -> list[torch.Generator]:
        """One generator per stream for the stream id ``stream`` (e.g. ``NOISE``)."""
        return [generator(master, seed, stream, *extra) for master, seed, *extra in self.coords]

    def initial_sample(self, n: int):
        """n samples per replica for statistics at initialization: x (R, n, M), y (R, n)."""
        xs, ys = zip(*(st.draw(n, g) for st, g in zip(self.streams, self.generators(NOISE_INIT))))
        return self.replicate(torch.stack(xs).to(self.dtype)), self.replicate(torch.stack(ys).to(self.dtype))

    def probe_set(self, device: torch.device = torch.device("cpu")) -> ProbeSet:
        """The probe (and test) sets on ``device``, one row per replica; moved per seed and then
        replicated there, so a GPU run copies L·K times fewer bytes from the CPU."""
        px, py = (torch.stack(v).to(device) for v in zip(*(st.probe() for st in self.probes)))  # (S, P, M), (S, P)
        bsz = torch.tensor(self.batch_sizes, dtype=self.dtype).view(1, self.K, 1)
        out = ProbeSet(self._per_seed(px), self._per_seed(py), bsz.expand(self.L, self.K, self.S).reshape(-1))
        tests = [st.test() for st in self.probes]
        if tests[0] is not None:
            out.test_x, out.test_y = (self._per_seed(torch.stack(v).to(device)) for v in zip(*tests))
        return _to_device(out, device)

    def start(self, batch: int, chunk: int) -> None:
        """Fork the drawing processes (``draw_processes`` > 1, beside a GPU) for chunks of ``chunk``
        steps of ``batch`` samples; from here on the streams are drawn there. Call :meth:`close` after."""
        if self.draw_processes > 1 and self._workers is None and workers.available():
            if any(s.counter_based for s in self.streams):  # compiled once here, inherited by the forks
                philox.prepare(torch.empty(0, dtype=self.draw_dtype).numpy().dtype)
            self._workers = workers.StreamWorkers(
                self.streams, chunk * batch, self.streams[0].M, self.draw_dtype, self.draw_processes
            )

    def close(self) -> None:
        """Stop the drawing processes, if any."""
        if self._workers is not None:
            self._workers.close()
            self._workers = None

    def chunk(self, n: int, batch: int, chunk: int, by_stream: bool = False):
        """Samples for n ≤ chunk steps: x (n, streams, batch, M), y (n, streams, batch).

        ``by_stream``: stack streams first instead, x (streams, n, batch, M), y (streams, n, batch).

        Always draws a whole chunk and keeps the first n steps: torch's vectorized
        samplers give different numbers for different request sizes, and a run of T
        steps must see the same first T minibatches as a longer run.
        """
        S, M = len(self.streams), self.streams[0].M
        if self._workers is not None:
            if self._workers.y.shape[1] != chunk * batch:
                raise ValueError("the drawing processes were started for another chunk size")
            x, y = self._workers.fill()
        else:
            x, y = self._draw(chunk * batch)
        buffers = x.data_ptr(), y.data_ptr()
        x, y = x.view(S, chunk, batch, M)[:, :n], y.view(S, chunk, batch)[:, :n]
        if not by_stream:
            x, y = x.transpose(0, 1), y.transpose(0, 1)
        # No copy unless n < chunk, the samples were drawn narrower (and are widened), or steps go first.
        dt = self.dtype if self.widen else self.draw_dtype
        x, y = x.to(dt).contiguous(), y.to(dt).contiguous()
        if self._workers is not None and (x.data_ptr(), y.data_ptr()) == buffers:
            x, y = x.clone(), y.clone()  # the shared buffer is drawn into again at the next call
        return x, y

    def _draw(self, per_stream: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every stream's next ``per_stream`` samples in this process: x (S, per_stream, M), y (S, per_stream)."""
        S, M = len(self.streams), self.streams[0].M
        x = torch.empty(S, per_stream, M, dtype=self.draw_dtype)
        y = torch.empty(S, per_stream, dtype=self.draw_dtype)
        jobs = list(zip(self.streams, x.unbind(), y.unbind()))

        def fill(part: range) -> None:
            for i in part:
                jobs[i][0].batches_into(jobs[i][1], jobs[i][2])

        k = self.draw_threads
        if k == 1:
            fill(range(S))
        else:  # each stream owns its generator: the same numbers whichever thread draws it
            with ThreadPoolExecutor(k, thread_name_prefix="thermosgd-draw") as pool:
                list(pool.map(fill, (range(i * S // k, (i + 1) * S // k) for i in range(k))))
        return x, y


def draw_threads(device: str, streams: int) -> int:
    """Threads that draw a chunk's sample streams: one on the CPU, several beside a GPU.

    On the CPU the compiled or torch step already uses the cores, and the chunk is drawn
    on one thread beside it. Beside a GPU the cores are idle, and one thread drawing
    tens of thousands of streams would be what the GPU waits for. torch's samplers
    release the GIL, but each stream's call holds it for a few microseconds of Python,
    so more than about eight threads buy nothing.
    """
    if device == "cpu" or streams < 64:
        return 1
    return max(1, min(8, (os.cpu_count() or 1) - 2, streams // 32))


def draw_processes(device: str, streams: int) -> int:
    """Processes that draw a chunk's streams (:mod:`~thermosgd.twolayer.workers`): beside a GPU where
    processes can be forked, one per free core up to 16, with at least 256 streams each; else 1 (none).

    On the CPU the step uses the cores. Beside a GPU, threads stall on the GIL that the process
    launching the GPU's kernels needs too (:func:`draw_threads`); processes do not.
    """
    if device == "cpu" or streams < 512 or not workers.available():
        return 1
    return max(1, min(16, (os.cpu_count() or 1) - 2, streams // 256))


def _draw_dtype(cfg: SweepConfig, dtype: torch.dtype, user: UserData | None) -> torch.dtype:
    """The dtype the training samples are drawn in: ``dtype``, except float32 for the G-sample noise
    models' fresh samples (Gaussian or uniform inputs, random labels) in float64 runs.

    Those models draw G·M inputs per step and stream. Their Gaussian inputs and random
    labels come from Philox (:mod:`~thermosgd.twolayer.philox`, computed in float64 and
    rounded once), uniform inputs from torch's sampler, whose float64 normals ran at a
    quarter of its float32 ones; drawn in float32, a chunk is half the bytes, and the
    compiled kernel widens each tile as it reads it. The inputs keep their distribution up to
    float32 rounding (relative 6·10⁻⁸). Teacher labels (whose teacher is drawn in the run's dtype), training
    sets and the user's data are drawn in ``dtype``, as is "sgd" everywhere.
    """
    online = user is None and not cfg.data.train_size and cfg.data.labels == "random"
    if cfg.train.noise != "sgd" and dtype == torch.float64 and online:
        return torch.float32
    return dtype
