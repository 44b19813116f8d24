"""Work units: a sweep cut into blocks of seeds, each stored atomically with a checksum.

A unit's results depend only on the configuration and its seeds (every random
draw derives from the master seed and the replica seed, and a unit always runs
on one intra-op thread), so units can run in any order, on any worker, be
interrupted and recomputed, and the merged results are bit-identical to an
uninterrupted run.

On disk, unit ``i`` is ``DIR/units/unit-00000.nc`` plus ``unit-00000.nc.sha256``.
Both are written under a temporary name (``.thermosgd-tmp-PID-unit-00000.nc``) and renamed
into place, the data first and the checksum second, so a unit counts as done
only when both exist and the checksum matches; anything else (a kill between
the two renames, a truncated or edited file) reads as corrupt and is recomputed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import xarray as xr

from thermosgd.config import SweepConfig, from_dict
from thermosgd.sweep.store import save_dataset, temporary_path

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


def plan_units(cfg: SweepConfig) -> list[Unit]:
    """Cut ``cfg.train.seeds`` into consecutive blocks of ``cfg.sweep.seeds_per_unit``."""
    seeds, k = cfg.train.seeds, cfg.sweep.seeds_per_unit
    return [Unit(i, tuple(seeds[j : j + k])) for i, j in enumerate(range(0, len(seeds), k))]


def unit_file(out: Path, unit: Unit) -> Path:
    return Path(out) / UNITS_DIR / f"{unit.name}.nc"


def checksum_file(out: Path, unit: Unit) -> Path:
    path = unit_file(out, unit)
    return path.with_name(path.name + ".sha256")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_unit(ds: xr.Dataset, out: Path, unit: Unit) -> Path:
    """Store one unit's results: data file renamed into place, then its checksum."""
    path = save_dataset(ds, unit_file(out, unit))
    sums = checksum_file(out, unit)
    tmp = temporary_path(sums)
    tmp.write_text(_sha256(path) + "\n")
    os.replace(tmp, sums)
    return path


def unit_state(out: Path, unit: Unit) -> str:
    """"done", "missing" or "corrupt" (checksum absent, mismatched or unreadable)."""
    path, sums = unit_file(out, unit), checksum_file(out, unit)
    if not path.exists():
        return MISSING
    try:
        ok = sums.read_text().strip() == _sha256(path)
    except (OSError, UnicodeDecodeError):
        return CORRUPT
    return DONE if ok else CORRUPT


def read_unit(out: Path, unit: Unit, cfg: SweepConfig | None = None) -> xr.Dataset | None:
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


def config_attr(cfg: SweepConfig) -> str:
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


def compute_unit(cfg_dict: dict, seeds: tuple[int, ...], progress: bool = False) -> xr.Dataset:
    """Train one unit. Takes a plain dict so it pickles to any worker.

    Args:
        cfg_dict: ``SweepConfig.to_dict()``.
        seeds: the unit's replica seeds.
        progress: a progress bar over SGD steps (in-process runs).

    Returns:
        Dataset with dims (lr, batch_size, seed, step), ``seed`` = ``seeds``.
    """
    from thermosgd.twolayer.engine import train

    desc = f"seeds {seeds[0]}–{seeds[-1]}" if len(seeds) > 1 else f"seed {seeds[0]}"
    with _one_thread():
        return train(from_dict(cfg_dict), list(seeds), progress=progress, desc=desc)
