"""Work units: a sweep cut into blocks of seeds, each stored atomically with a checksum.

Two sizes matter, and they are chosen separately:

* an *engine call* trains ``c`` seeds (× every lr × every |B|) as one batch of
  tensors. ``c`` is set by the work per step (:func:`call_seeds`): enough
  replicas that Python and dispatch overhead are a small part of each step,
  never more than the engine's cache block.
* a *unit* is what is written to disk at once and recomputed after a kill: one
  or more whole engine calls (``seeds_per_unit = "auto"``: about 2–60 s of work
  each, and at least 16 units when there are that many calls), or a fixed
  number of seeds.

A replica's numbers never depend on the unit layout, bit for bit. Every random
draw derives from the master seed and the replica's own seed, and a unit always
runs on one intra-op thread. What remains is floating-point: PyTorch's CPU
kernels take a vectorized path for most elements of a tensor and a scalar path
(with its own rounding, e.g. of ``exp``) for the last few, so a replica's bits
depend on where in the batch it sits. Engine calls therefore always hold exactly
``c`` seeds at fixed places: call ``j`` holds the config's seeds ``j·c … j·c+c−1``,
each at its own slot; slots outside the unit are trained too (with the config's
seeds that belong there, or unused seeds past the last one) and dropped afterwards. So a seed is
always computed in the same slot of a same-sized call, whatever unit it is in.
When ``c·L·K`` is a multiple of 64 no element takes the scalar path at all, and
the numbers also equal an in-memory ``thermosgd.train`` of the whole grid when
its replica count is a multiple of 64 too (e.g. fig3 at 256 seeds).

So units can run in any order, on any worker, be interrupted and recomputed,
and the merged results are bit-identical to an uninterrupted run.

On disk, unit ``i`` is ``DIR/units/unit-00000.nc`` plus ``unit-00000.nc.sha256``.
Both are written under a temporary name (``.thermosgd-tmp-PID-unit-00000.nc``) and renamed
into place, the data first and the checksum second, so a unit counts as done
only when both exist and the checksum matches; anything else (a kill between
the two renames, a truncated or edited file) reads as corrupt and is recomputed.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import xarray as xr

from thermosgd.config import SweepConfig, from_dict
from thermosgd.errors import UsageError
from thermosgd.sweep.store import file_sha256, read_meta, save_dataset, write_text
from thermosgd.twolayer import budget

UNITS_DIR = "units"
DONE, MISSING, CORRUPT = "done", "missing", "corrupt"


@dataclass(frozen=True)
class Unit:
    """One block of seeds: every lr × batch size for ``seeds``."""

    index: int
    seeds: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"unit-{self.index:05d}"

    def describe(self) -> str:
        """``unit-00003 (seeds 6–7)``, for messages."""
        span = f"seed {self.seeds[0]}" if len(self.seeds) == 1 else f"seeds {self.seeds[0]}–{self.seeds[-1]}"
        return f"{self.name} ({span})"


LANE = 64  # replicas: a call of a multiple of this has no element on PyTorch's scalar tail path
UNIT_SECONDS = (2.0, 60.0)  # an auto unit's work on one core: at least, at most (unless one call is longer)
MIN_UNITS = 16  # auto: at least this many units when there are that many engine calls


def call_seeds(cfg: SweepConfig) -> int:
    """Seeds per engine call, ``c``: a function of the grid only, never of the unit layout.

    Enough replicas for a step to run at ~80% engine efficiency
    (:func:`budget.efficient_replicas`), at most the engine's cache block,
    spread evenly over the calls the seeds need, and rounded up to whole
    lanes of 64 replicas when that at most doubles the call.
    """
    g = budget.Grid.of(cfg)
    S, per_seed = g.seeds, g.per_seed
    block = budget.engine_block_seeds(g)
    lane = LANE // math.gcd(LANE, per_seed)  # seeds per lane
    c = min(block, max(1, math.ceil(budget.efficient_replicas(g) / per_seed)))
    if c >= S:
        return S
    c = math.ceil(S / math.ceil(S / c))  # the same number of calls, evenly filled
    if lane <= c:
        rounded = math.ceil(c / lane) * lane
        c = rounded if rounded <= block else c
    return min(c, S)


def plan_units(cfg: SweepConfig) -> list[Unit]:
    """Cut ``cfg.train.seeds`` into consecutive units (``cfg.sweep.seeds_per_unit``).

    ``"auto"``: units of whole engine calls, each about ``UNIT_SECONDS`` of
    estimated work, at least ``MIN_UNITS`` of them when there are that many
    calls. An integer k: k seeds per unit.
    """
    seeds, k = cfg.train.seeds, cfg.sweep.seeds_per_unit
    if k == "auto":
        c = call_seeds(cfg)
        calls = math.ceil(len(seeds) / c)
        per_call = budget.call_seconds(budget.Grid.of(cfg), c)
        lo, hi = (
            math.ceil(t / per_call) if i == 0 else max(1, math.floor(t / per_call)) for i, t in enumerate(UNIT_SECONDS)
        )
        k = c * max(1, min(hi, max(lo, math.ceil(calls / MIN_UNITS))))
    assert isinstance(k, int)  # the config allows "auto" or an int
    return [Unit(i, tuple(seeds[j : j + k])) for i, j in enumerate(range(0, len(seeds), k))]


STUDY_UNITS = 16  # a study's "auto" layout: at most about this many units (a kill loses at most one)
STUDY_MIN_SEEDS = 8  # ... of at least this many seeds: a unit's seeds train as one ensemble (3x at 8 seeds)


def study_units(seeds: tuple[int, ...] | list[int], seeds_per_unit: int | str) -> list[Unit]:
    """A study's units (:mod:`thermosgd.studies`): consecutive blocks of its seeds.

    A study's replica never depends on its unit, so the layout decides what a kill
    loses and how many seeds share one ensemble: ``"auto"`` puts at least
    ``STUDY_MIN_SEEDS`` seeds in a unit (a unit's seeds train together, which is
    where the ensemble's speed comes from) and cuts at most about ``STUDY_UNITS`` units.
    """
    auto = max(min(STUDY_MIN_SEEDS, len(seeds)), math.ceil(len(seeds) / STUDY_UNITS), 1)
    k = auto if isinstance(seeds_per_unit, str) else int(seeds_per_unit)
    return [Unit(i, tuple(seeds[j : j + k])) for i, j in enumerate(range(0, len(seeds), k))]


@dataclass(frozen=True)
class Stamp:
    """A configuration that is already a dict (a study's), in the shape the functions here read."""

    stamp: dict

    def to_dict(self) -> dict:
        return self.stamp


def unit_file(out: Path, unit: Unit) -> Path:
    return Path(out) / UNITS_DIR / f"{unit.name}.nc"


def checksum_file(out: Path, unit: Unit) -> Path:
    path = unit_file(out, unit)
    return path.with_name(path.name + ".sha256")


def write_unit(ds: xr.Dataset, out: Path, unit: Unit) -> Path:
    """Store one unit's results: data file renamed into place, then its checksum."""
    path = save_dataset(ds, unit_file(out, unit))
    write_text(checksum_file(out, unit), file_sha256(path) + "\n")
    return path


def unit_state(out: Path, unit: Unit) -> str:
    """ "done", "missing" or "corrupt" (checksum absent, mismatched or unreadable)."""
    path, sums = unit_file(out, unit), checksum_file(out, unit)
    if not path.exists():
        return MISSING
    try:
        ok = read_meta(sums).strip() == file_sha256(path)
    except (OSError, UsageError):
        return CORRUPT
    return DONE if ok else CORRUPT


def read_unit(out: Path, unit: Unit, cfg: SweepConfig | Stamp | None = None) -> xr.Dataset | None:
    """The unit's results, or None when missing or corrupt (then it is recomputed).

    Besides the checksum, the file must hold exactly the unit's seeds and, when
    ``cfg`` is given, have been produced by that configuration: a unit file
    copied in from another sweep is never read as this one's.
    """
    if unit_state(out, unit) != DONE:
        return None
    try:
        with xr.open_dataset(unit_file(out, unit), engine="scipy") as ds:
            ds = ds.load()
    except Exception:  # noqa: BLE001 - any unreadable file is recomputed
        return None
    if "seed" not in ds.coords or tuple(int(s) for s in ds["seed"].values) != unit.seeds:
        return None
    if cfg is not None and ds.attrs.get("config") != config_attr(cfg):
        return None
    if "diverged" in ds:  # NetCDF-3 has no bool; stored as int32
        ds["diverged"] = ds["diverged"].astype(bool)
    return ds


def config_attr(cfg: SweepConfig | Stamp) -> str:
    """The ``attrs["config"]`` string a unit trained from ``cfg`` carries."""
    return json.dumps(cfg.to_dict(), sort_keys=True)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run on one intra-op thread: torch's parallel reductions split work by
    thread count, so pinning it keeps a unit's numbers identical whether it runs
    in this process, a worker process or on a Dask worker. Parallelism comes
    from running units side by side."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def engine_calls(cfg: SweepConfig, seeds: tuple[int, ...]) -> list[tuple[list[int], list[int]]]:
    """The engine calls that train ``seeds`` (consecutive seeds of ``cfg``): for each,
    the ``c`` seeds it trains, slot by slot, and the slots to keep (see the module docstring).

    Slot ``p`` of call ``j`` holds the config's seed ``j·c + p``; slots past the last
    seed hold seeds the config does not use. Either way the filler replicas are
    computed and dropped: what matters is that each kept seed sits at its own slot.
    """
    everything = cfg.train.seeds
    c = call_seeds(cfg)
    start = everything.index(seeds[0])
    if tuple(everything[start : start + len(seeds)]) != tuple(seeds):
        raise ValueError(f"seeds {seeds[0]}..{seeds[-1]} are not consecutive seeds of the config")
    calls = []
    for j in range(start // c, (start + len(seeds) - 1) // c + 1):
        first, last = max(j * c, start), min(j * c + c, start + len(seeds))
        past = max(0, j * c + c - len(everything))
        slots = list(everything[j * c : j * c + c]) + _unused_seeds(everything, past)
        calls.append((slots, list(range(first - j * c, last - j * c))))
    return calls


def _unused_seeds(used, n: int) -> list[int]:
    """The ``n`` smallest nonnegative integers not in ``used`` (distinct filler seeds)."""
    if n == 0:
        return []
    taken, s = set(used), 0
    out: list[int] = []
    while len(out) < n:
        if s not in taken:
            out.append(s)
        s += 1
    return out


def compute_unit(cfg_dict: dict, seeds: tuple[int, ...], progress: bool = False) -> xr.Dataset:
    """Train one unit. Takes a plain dict so it pickles to any worker.

    Args:
        cfg_dict: ``SweepConfig.to_dict()``.
        seeds: the unit's replica seeds (consecutive seeds of the config).
        progress: a progress bar over SGD steps (in-process runs).

    Returns:
        Dataset with dims (lr, batch_size, seed, step), ``seed`` = ``seeds``.
    """
    from thermosgd.twolayer.engine import train

    cfg = from_dict(cfg_dict)
    desc = f"seeds {seeds[0]}–{seeds[-1]}" if len(seeds) > 1 else f"seed {seeds[0]}"
    parts = []
    with _one_thread():
        for slots, keep in engine_calls(cfg, tuple(seeds)):
            ds = train(cfg, slots, progress=progress, desc=desc)
            parts.append(ds if len(keep) == len(slots) else ds.isel(seed=keep))
    if len(parts) == 1:
        return parts[0]
    out = xr.concat(parts, dim="seed", data_vars="all", coords="different", compat="equals", join="exact")
    out.attrs = parts[0].attrs
    return out
