"""Results on disk: one self-describing folder per sweep.

Layout of a results folder::

    DIR/
      config.json     the full, validated configuration that produced it
      results.nc      NetCDF (xarray) with dims (lr, batch_size, seed, step)
      figures/        PNG and PDF figures made from results.nc only

NetCDF is written with SciPy's backend (NetCDF-3, 64-bit offsets), which every
NetCDF reader (xarray, netCDF4, ncdump, R, Julia) can open and which needs no
compiled HDF5 library.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import xarray as xr

from thermosgd.errors import UsageError

RESULTS_FILE = "results.nc"
CONFIG_FILE = "config.json"
SWEEP_DIMS = ("lr", "batch_size", "seed", "step")


def _netcdf_ready(ds: xr.Dataset) -> xr.Dataset:
    """Cast what NetCDF-3 cannot hold (int64, bool) to int32."""
    out = ds.copy()
    for name, var in list(out.variables.items()):
        if var.dtype == bool or var.dtype == np.int64:
            out[name] = var.astype(np.int32)
    return out


def save_dataset(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` atomically to ``path`` (a ``.nc`` file).

    The data go to a temporary name first and are renamed into place, so a
    reader never sees a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _netcdf_ready(ds).to_netcdf(tmp, engine="scipy", format="NETCDF3_64BIT")
    os.replace(tmp, path)
    return path


def write_config(config: dict, folder: str | os.PathLike) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CONFIG_FILE
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def load(path: str | os.PathLike) -> xr.Dataset:
    """Load a sweep's results as an :class:`xarray.Dataset`.

    Args:
        path: a results folder (containing ``results.nc``) or the ``.nc`` file.

    Returns:
        Dataset with dims ``(lr, batch_size, seed, step)`` (size-1 dims kept),
        coordinate ``step`` = SGD iteration number (0 = initialization), and data
        variables such as ``activation_rate``, ``v_norm``, ``bias_mean``, ``loss``.
        The producing configuration is in ``ds.attrs["config"]`` (JSON).
    """
    path = Path(path)
    file = path / RESULTS_FILE if path.is_dir() else path
    if not file.exists():
        where = f"{path} (no {RESULTS_FILE} in it)" if path.is_dir() else f"{path} (no such file or folder)"
        raise UsageError(f"no results found at {where}")
    try:
        with xr.open_dataset(file, engine="scipy") as ds:
            out = ds.load()
    except Exception as exc:  # corrupt or foreign file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot read results file {file}: {first}") from None
    for name in ("diverged",):
        if name in out:
            out[name] = out[name].astype(bool)
    return out
