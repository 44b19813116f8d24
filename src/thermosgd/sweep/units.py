"""Work units: a sweep cut into blocks of seeds, each stored atomically with a checksum.

A unit's results depend only on the configuration and its seeds (every random
draw derives from the master seed and the replica seed), so units can run in
any order, on any worker, be interrupted and recomputed, and the merged results
are bit-identical to an uninterrupted run.

On disk, unit ``i`` is ``DIR/units/unit-00000.nc`` plus ``unit-00000.nc.sha256``.
The data file is renamed into place first and the checksum second, so a unit
counts as done only when both exist and the checksum matches.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import xarray as xr

from thermosgd.sweep.config import SweepConfig, from_dict
from thermosgd.sweep.store import save_dataset

UNITS_DIR = "units"


@dataclass(frozen=True)
class Unit:
    """One block of seeds: every lr × batch size for ``seeds``."""

    index: int
    seeds: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"unit-{self.index:05d}"


def plan_units(cfg: SweepConfig) -> list[Unit]:
    seeds, k = cfg.train.seeds, cfg.sweep.seeds_per_unit
    return [Unit(i, tuple(seeds[j : j + k])) for i, j in enumerate(range(0, len(seeds), k))]


def unit_file(out: Path, unit: Unit) -> Path:
    return Path(out) / UNITS_DIR / f"{unit.name}.nc"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_unit(ds: xr.Dataset, out: Path, unit: Unit) -> Path:
    path = unit_file(out, unit)
    save_dataset(ds, path)
    sums = path.with_name(path.name + ".sha256")
    tmp = sums.with_name(f".{sums.name}.tmp-{os.getpid()}")
    tmp.write_text(_sha256(path) + "\n")
    os.replace(tmp, sums)
    return path


def unit_state(out: Path, unit: Unit) -> str:
    """'done', 'missing' or 'corrupt' (checksum absent, mismatched or unreadable)."""
    path = unit_file(out, unit)
    sums = path.with_name(path.name + ".sha256")
    if not path.exists():
        return "missing"
    if not sums.exists():
        return "corrupt"
    if sums.read_text().strip() != _sha256(path):
        return "corrupt"
    return "done"


def read_unit(out: Path, unit: Unit) -> xr.Dataset | None:
    """The unit's results, or None when missing or corrupt (then it is recomputed)."""
    if unit_state(out, unit) != "done":
        return None
    try:
        with xr.open_dataset(unit_file(out, unit), engine="scipy") as ds:
            return ds.load()
    except Exception:
        return None


def compute_unit(cfg_dict: dict, seeds: tuple[int, ...], progress: bool = False) -> xr.Dataset:
    """Train one unit. Takes a plain dict so it pickles to any worker."""
    from thermosgd.twolayer.engine import train

    return train(from_dict(cfg_dict), list(seeds), progress=progress, desc=f"seeds {seeds[0]}–{seeds[-1]}")
