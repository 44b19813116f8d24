"""What a two-layer grid costs before it runs: memory, time, and the one check that refuses it.

``thermosgd.train``, ``thermosgd.sweep`` and the ``sweep`` / ``reproduce``
commands all call :func:`check` before anything is built or written, so a grid
that would not fit in this machine's memory, or would run for months, is
refused with one line naming its size and a smaller setting that fits, instead
of dying halfway or running for ever.

The estimates are models of the engine (:mod:`thermosgd.twolayer.engine`), not
measurements of this run:

* memory: the engine's buffers for the replicas trained at once (parameters,
  one chunk of minibatches, the probe and test sets replicated per replica, the
  per-step and probe temporaries, the records) plus the results held at the end
  and a fixed allowance for the interpreter and torch;
* time: ``steps × (A + R·C·w^0.6)`` for ``R`` replicas of per-step work
  ``w = N·M·|B|``, plus the recording and probe passes, with constants fitted to
  the CPU time of engine runs on one core of a 2-core Xeon (Sapphire Rapids,
  AVX-512); within 0.5–1.6× there, on other machines expect more.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

from thermosgd.config import SweepConfig
from thermosgd.errors import UsageError

# Time model (seconds), see the module docstring. Fitted to the CPU time of single-thread
# engine runs (R = 4…512 replicas of 10×10, 30×30 and 100×100, |B| = 1 and 3, recording
# every step to never): the model is within 0.5–1.6× of each.
_STEP_FIXED = 90e-6  # per SGD step of one engine call: ~15 torch calls
_STEP_PER_REPLICA = 0.04e-6  # × w^0.6 per replica
_RECORD_FIXED = 150e-6
_RECORD_PER_REPLICA = 0.06e-6  # × (N·M)^0.75
_PROBE_FIXED = 700e-6
_PROBE_PER_SAMPLE = 0.010e-6  # × (N·M)^0.55 per replica and probe sample
_SETUP_PER_SEED = 2e-4  # generators, initialization and probe set of one seed

ENGINE_BLOCK_ENTRIES = 1 << 20  # engine._BLOCK_ENTRIES: first-layer weights trained together at most
_PROCESS_BYTES = 450 << 20  # an interpreter with torch, xarray and NumPy imported
_CHUNK = 256  # minibatches the engine draws at once (engine._CHUNK)
N_METRICS = 12  # recorded variables per replica and step (engine's recorder)
# What the merged results cost beyond their own size while a sweep concatenates the
# units, reorders the seeds and converts them for NetCDF.
_MERGE_COPIES = 4
NETCDF3_VARIABLE_BYTES = 4 * 2**30 - 4  # NetCDF-3 (64-bit offset): one variable below 4 GiB
MAX_SECONDS = 30 * 24 * 3600.0  # a grid estimated to run longer than this is refused


@dataclass(frozen=True)
class Cost:
    """Estimated peak memory (bytes, all processes together) and wall-clock time (s)."""

    memory: int
    seconds: float

    def describe(self) -> str:
        return f"~{human_bytes(self.memory)} of memory, ~{human_seconds(self.seconds)}"


@dataclass(frozen=True)
class Grid:
    """The sizes of a two-layer grid that its cost depends on (cheap to vary, unlike a config).

    Attributes:
        seeds: S; lrs: L; batch_sizes: the |B| values; batch: samples one step
        of a replica sees (max |B|, or ``gd_batch`` for the noise-model
        controls); chunk: steps of samples drawn at once; steps, record_every,
        probe_every (0 = record_every); inputs M, hidden N; probe, test and
        train_size (0 = online) samples; dtype_bytes 4 or 8; share_data.
    """

    seeds: int
    lrs: int
    batch_sizes: tuple[int, ...]
    batch: int
    chunk: int
    tracks_norms: bool
    steps: int
    record_every: int
    probe_every: int
    inputs: int
    hidden: int
    probe: int
    test: int
    train_size: int
    dtype_bytes: int
    share_data: bool

    @classmethod
    def of(cls, cfg: SweepConfig, seeds: int | None = None) -> Grid:
        t, d = cfg.train, cfg.data
        # SVAG runs t.svag updates per configured step, "sgd" on two minibatches each: the grid is
        # costed in updates (so step counts in its messages are updates, t.svag per step).
        per_step = t.svag
        batch = max(t.batch_size) * (1 if per_step == 1 else 2) if t.noise == "sgd" else t.gd_batch
        # engine: _CHUNK steps of minibatches, or ~2^18 input numbers per stream for G-sample steps
        chunk = _CHUNK if t.noise == "sgd" else max(1, min(_CHUNK, (1 << 18) // (batch * cfg.model.inputs)))
        return cls(
            seeds=len(t.seeds) if seeds is None else seeds,
            lrs=len(t.lr),
            batch_sizes=tuple(t.batch_size),
            batch=batch,
            chunk=chunk,
            tracks_norms=t.noise == "sgd" and 4 * (t.steps // t.record_every) >= t.steps,
            steps=per_step * t.steps,
            record_every=per_step * t.record_every,
            probe_every=per_step * cfg.probe_every_steps,
            inputs=cfg.model.inputs,
            hidden=cfg.model.hidden,
            probe=d.probe_size,
            test=d.test_size,
            train_size=d.train_size,
            dtype_bytes=8 if t.dtype == "float64" else 4,
            share_data=t.share_data,
        )

    def with_(self, **changes) -> Grid:
        return dataclasses.replace(self, **changes)

    @property
    def per_seed(self) -> int:
        """L·K: replicas per seed."""
        return self.lrs * len(self.batch_sizes)

    @property
    def replicas(self) -> int:
        return self.seeds * self.per_seed

    @property
    def work(self) -> int:
        """w = N·M·batch: multiply-adds of one replica's forward pass in one step."""
        return self.hidden * self.inputs * self.batch

    @property
    def records(self) -> int:
        return self.steps // self.record_every + 1 + (self.steps % self.record_every != 0)

    @property
    def probes(self) -> int:
        return self.steps // self.probe_every + 1 + (self.steps % self.probe_every != 0)

    def words(self) -> str:
        return (
            f"{self.lrs} lr × {len(self.batch_sizes)} batch sizes × {self.seeds} seeds = "
            f"{self.replicas} replicas, {self.steps} steps, {self.records} recorded"
        )


def human_bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n / 1e3:.3g} kB"


def human_seconds(s: float) -> str:
    if s >= 3600 * 48:
        return f"{s / 3600:,.0f} h"
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.1f} s"


def efficient_replicas(g: Grid, efficiency: float = 0.8) -> float:
    """Replicas one engine call needs so that the per-step fixed cost (Python and
    dispatch of ~15 torch calls) is at most ``1 - efficiency`` of a step."""
    return efficiency / (1 - efficiency) * _STEP_FIXED / (_STEP_PER_REPLICA * g.work**0.6)


def engine_block_seeds(g: Grid) -> int:
    """Seeds the engine trains together at most (engine.train's cache blocking)."""
    return max(1, ENGINE_BLOCK_ENTRIES // (g.per_seed * g.hidden * g.inputs))


def step_seconds(g: Grid, replicas: int) -> float:
    """One SGD step of ``replicas`` replicas in one engine call, one thread."""
    return _STEP_FIXED + replicas * _STEP_PER_REPLICA * g.work**0.6


def call_seconds(g: Grid, seeds: int) -> float:
    """One engine call training ``seeds`` seeds (× L·K replicas) for the whole run."""
    R = seeds * g.per_seed
    nm = g.hidden * g.inputs
    steps = g.steps * step_seconds(g, R)
    records = g.records * (_RECORD_FIXED + R * _RECORD_PER_REPLICA * nm**0.75)
    probes = g.probes * (_PROBE_FIXED + R * g.probe * _PROBE_PER_SAMPLE * nm**0.55)
    return steps + records + probes + seeds * _SETUP_PER_SEED


def results_bytes(g: Grid, replicas: int) -> int:
    """The recorded metrics of ``replicas`` replicas (one copy)."""
    return replicas * g.records * N_METRICS * g.dtype_bytes


def call_bytes(g: Grid, seeds: int) -> int:
    """Working memory of one engine call training ``seeds`` seeds, records and results included."""
    N, M, B, P = g.hidden, g.inputs, g.batch, g.probe
    R = seeds * g.per_seed
    streams = seeds if g.share_data else R
    total = 2 * R * (N * M + 2 * N)  # parameters and the initialization they come from
    total += 2 * g.chunk * streams * B * (M + 1) + 2 * R * B * (
        M + 1
    )  # a chunk of samples per stream; one step's per replica
    total += 8 * R * B * N  # per-step temporaries
    if g.tracks_norms:
        total += 2 * R * B * B  # x xᵀ of the running ‖W_i‖² update
    total += R * P * (M + 1) + seeds * P * (M + 1) + 6 * R * P * N  # probe set per replica, probe pass
    total += R * g.test * (M + 1) + 2 * R * g.test * N
    total += streams * g.train_size * (M + 1)  # each stream's finite training set
    total *= g.dtype_bytes
    return total + 3 * results_bytes(g, R)  # recorder buffers, their NumPy copy, the Dataset


def available_memory() -> int | None:
    """Bytes this process may still allocate: MemAvailable, capped by a cgroup limit; None if unknown."""
    found = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    if found is None:
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    try:  # cgroup v2: a container's limit can be far below the machine's memory
        with open("/sys/fs/cgroup/memory.max") as fh:
            limit = fh.read().strip()
        with open("/sys/fs/cgroup/memory.current") as fh:
            used = int(fh.read().strip())
        if limit != "max":
            found = min(found, int(limit) - used)
    except (OSError, ValueError):
        pass
    return max(found, 0)


def train_cost(g: Grid, block_seeds: int) -> Cost:
    """In-memory :func:`thermosgd.train` of ``g.seeds`` seeds, in engine blocks of ``block_seeds``."""
    blocks, last = divmod(g.seeds, block_seeds)
    seconds = blocks * call_seconds(g, block_seeds) + (call_seconds(g, last) if last else 0.0)
    memory = _PROCESS_BYTES + call_bytes(g, min(g.seeds, block_seeds)) + 2 * results_bytes(g, g.replicas)
    return Cost(memory, seconds)


def sweep_cost(g: Grid, unit_calls: list[int], call_seeds: int, *, workers: int = 1, where: str = "inline") -> Cost:
    """A sweep of units of ``unit_calls[i]`` engine calls of ``call_seeds`` seeds each.

    Args:
        g: the grid.
        unit_calls: engine calls per unit.
        call_seeds: seeds per engine call.
        workers: units running side by side.
        where: ``"inline"`` (units run in this process), ``"processes"`` (in
            ``workers`` processes on this machine) or ``"remote"`` (elsewhere:
            only the merged results count here).
    """
    per_call = call_seconds(g, call_seeds)
    lanes = [0.0] * max(1, min(workers, len(unit_calls)))
    for n in sorted(unit_calls, reverse=True):  # longest first onto the least loaded worker
        lanes[lanes.index(min(lanes))] += n * per_call
    unit_results = max(unit_calls) * results_bytes(g, call_seeds * g.per_seed)
    worker = call_bytes(g, call_seeds) + 2 * unit_results
    memory = _PROCESS_BYTES + _MERGE_COPIES * results_bytes(g, g.replicas)
    if where == "inline":
        memory += worker
    elif where == "processes":
        memory += len(lanes) * (_PROCESS_BYTES + worker)
    return Cost(memory, max(lanes))


def check_train(cfg: SweepConfig, seeds: int) -> Cost:
    """The check :func:`thermosgd.train` makes: ``seeds`` seeds in memory, in engine blocks."""
    g = Grid.of(cfg, seeds)
    block = engine_block_seeds(g)
    return check(g, lambda x: train_cost(x, block), what="train()")


def check(g: Grid, cost_of, *, what: str, netcdf: bool = False) -> Cost:
    """Refuse a grid that would not fit in memory or would run longer than 30 days.

    Args:
        g: the grid's sizes.
        cost_of: ``Grid -> Cost`` for the way it will run (in memory, inline
            sweep, worker processes); called again on smaller grids to find
            settings that fit.
        what: how the run is named in the message (``"the sweep"``, ``"train()"``).
        netcdf: the results go to NetCDF-3 files, whose variables must stay below 4 GiB.

    Returns:
        The estimate, when it fits.

    Raises:
        UsageError: one line with the estimate and smaller settings that pass
            every one of these checks.
    """
    avail = available_memory()

    def variable_ok(x: Grid) -> bool:
        return not netcdf or results_bytes(x, x.replicas) // N_METRICS <= NETCDF3_VARIABLE_BYTES

    def ok(x: Grid) -> bool:
        if not variable_ok(x):
            return False
        c = cost_of(x)
        return (avail is None or c.memory <= avail) and c.seconds <= MAX_SECONDS

    if not variable_ok(g):
        var = results_bytes(g, g.replicas) // N_METRICS
        raise UsageError(
            f"{what} would write {human_bytes(var)} per variable ({g.words()}), more than "
            f"NetCDF-3 files hold (4 GiB); use {_fitting(g, ok)}"
        )
    cost = cost_of(g)
    if avail is not None and cost.memory > avail:
        raise UsageError(
            f"{what} needs {human_bytes(cost.memory)} of memory ({g.words()}) and "
            f"{human_bytes(avail)} are available; use {_fitting(g, ok)}"
        )
    if cost.seconds > MAX_SECONDS:
        steps = _largest(
            lambda n: ok(g.with_(steps=n, record_every=min(g.record_every, n), probe_every=min(g.probe_every, n))),
            g.steps,
        )
        fewer = f"at most {steps} steps, or " if steps else ""
        raise UsageError(
            f"{what} would run for about {human_seconds(cost.seconds)} on this machine ({g.words()}), more "
            f"than {MAX_SECONDS / 86400:.0f} days; use {fewer}fewer seeds or learning rates"
        )
    return cost


def _fitting(g: Grid, ok) -> str:
    """Settings with which ``ok`` holds: fewer seeds, recording less often, or fewer steps."""
    options = []
    seeds = _largest(lambda s: ok(g.with_(seeds=s)), g.seeds)
    if seeds:
        options.append(f"at most {seeds} seeds")
    every = _smallest_every(g, ok)
    if every:
        options.append(f"record_every = {every}")
    if not options:
        steps = _largest(
            lambda n: ok(g.with_(steps=n, record_every=min(g.record_every, n), probe_every=min(g.probe_every, n))),
            g.steps,
        )
        if steps:
            options.append(f"at most {steps} steps")
    if not options:
        return "a smaller model, batch, probe or test set (one seed alone does not fit)"
    return " or ".join(options)


def _largest(ok, upper: int) -> int:
    """About the largest n in [1, upper) with ok(n), ok monotone (true up to some n); 0 if none.

    Rounded down to two significant digits: a suggestion, not a boundary to sit on.
    """
    if upper <= 1 or not ok(1):
        return 0
    lo, hi = 1, upper - 1
    if not ok(hi):
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    else:
        lo = hi
    digits = max(0, len(str(lo)) - 2)
    return max(1, (lo // 10**digits) * 10**digits)


def _smallest_every(g: Grid, ok) -> int | None:
    """Smallest record_every of the form 1, 2 or 5 × 10^k above today's with which ``ok`` holds."""
    for k in range(13):
        for m in (1, 2, 5):
            every = m * 10**k
            if every <= g.record_every:
                continue
            if every > g.steps:
                return None
            probe = math.lcm(every, g.probe_every) if g.probe_every % g.record_every == 0 else every
            if ok(g.with_(record_every=every, probe_every=probe)):
                return every
    return None
