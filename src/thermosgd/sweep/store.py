"""Results on disk: one self-describing folder per sweep.

Layout of a results folder::

    DIR/
      config.json     the full, validated configuration that produced it
      results.nc      NetCDF (xarray) with dims (lr, batch_size, seed, step)
      results.nc.sha256  its SHA-256 and the fingerprint of config.json; checked
                      by ``load`` and ``thermosgd status``
      figures/        PNG and PDF figures made from results.nc only

Every file is written under a temporary name ``.thermosgd-tmp-PID-NAME`` and
renamed into place. Only such names whose writer (PID) is gone are ever
deleted, so files of the user's that merely look temporary are never touched.

NetCDF is written with SciPy's backend (NetCDF-3, 64-bit offsets), which every
NetCDF reader (xarray, netCDF4, ncdump, R, Julia) can open and which needs no
compiled HDF5 library.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import xarray as xr

from thermosgd.errors import UsageError

RESULTS_FILE = "results.nc"
RESULTS_SUM = RESULTS_FILE + ".sha256"
CONFIG_FILE = "config.json"
#: Marks a folder written by ``thermosgd reproduce`` for a walk, deep or analysis preset.
RUN_MARKER = ".thermosgd-run.json"
SWEEP_DIMS = ("lr", "batch_size", "seed", "step")
_TMP_PREFIX = ".thermosgd-tmp-"
_TMP_NAME = re.compile(r"\.thermosgd-tmp-(\d+)-.+")
_REBUILD = "re-run the same command (same --out) to rebuild it (a sweep re-merges its finished units)"


def temporary_path(path: Path) -> Path:
    """Where ``path`` is written before it is renamed into place: ``.thermosgd-tmp-PID-NAME``."""
    path = Path(path)
    return path.with_name(f"{_TMP_PREFIX}{os.getpid()}-{path.name}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a live process of another user
        return True
    return True


def stale_temporaries(out: str | os.PathLike, folders: tuple[str, ...] = ("", "units")) -> list[Path]:
    """Our temporaries (``.thermosgd-tmp-PID-NAME``) in ``out`` whose writer is gone.

    A temporary of this very process counts as stale too: a caller holding the
    folder lock has not started writing yet, so it was left by an earlier process
    that had the same pid.
    """
    out = Path(out)
    found = []
    for folder in (out / f for f in folders):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            m = _TMP_NAME.fullmatch(p.name)
            if m and p.is_file() and not p.is_symlink() and (int(m[1]) == os.getpid() or not _alive(int(m[1]))):
                found.append(p)
    return sorted(found)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    tmp = temporary_path(path)
    _netcdf_ready(ds).to_netcdf(tmp, engine="scipy", format="NETCDF3_64BIT")
    os.replace(tmp, path)
    return path


def write_config(config: dict, folder: str | os.PathLike) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CONFIG_FILE
    tmp = temporary_path(path)
    tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def config_fingerprint(config: dict) -> str:
    """SHA-256 of a configuration's canonical JSON (key order and spacing do not matter)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def save_results(ds: xr.Dataset, folder: str | os.PathLike, config: dict) -> Path:
    """Write ``folder/results.nc`` and, after it, ``results.nc.sha256``.

    The checksum file holds the SHA-256 of ``results.nc`` and the fingerprint of
    ``config`` (the folder's ``config.json``): :func:`load` and ``thermosgd status``
    detect flipped bytes, truncation and a ``results.nc`` (even with its checksum
    file) copied in from a run of another configuration.
    """
    folder = Path(folder)
    sums = folder / RESULTS_SUM
    sums.unlink(missing_ok=True)  # killed before the new one is in place: "no checksum", not "corrupt"
    path = save_dataset(ds, folder / RESULTS_FILE)
    tmp = temporary_path(sums)
    tmp.write_text(f"{file_sha256(path)}  {RESULTS_FILE}\nconfig {config_fingerprint(config)}\n")
    os.replace(tmp, sums)
    return path


def results_problem(folder: str | os.PathLike) -> str | None:
    """Why ``folder/results.nc`` cannot be trusted, or None when it checks out (or is absent).

    Checks its SHA-256 against ``results.nc.sha256`` and, where the folder has a
    ``config.json``, that the checksum file was written for that configuration.
    Reads the bytes once; does not parse the NetCDF file.
    """
    folder = Path(folder)
    file, sums = folder / RESULTS_FILE, folder / RESULTS_SUM
    if not file.exists():
        return None
    try:
        lines = sums.read_text().split("\n")
    except FileNotFoundError:
        return f"{file} has no checksum file {RESULTS_SUM} (written by an older thermosgd, or interrupted)"
    except (OSError, UnicodeDecodeError):
        return f"{file}'s checksum file {RESULTS_SUM} is unreadable"
    digest = lines[0].split()[0] if lines and lines[0].split() else ""
    try:
        actual = file_sha256(file)
    except OSError as exc:
        return f"{file} is unreadable ({exc.strerror})"
    if digest != actual:
        return f"{file} does not match its checksum (corrupted, truncated or changed after it was written)"
    config_file = folder / CONFIG_FILE
    if config_file.exists():
        recorded = next((ln.split()[1] for ln in lines if ln.startswith("config ") and len(ln.split()) == 2), None)
        try:
            expected = config_fingerprint(json.loads(config_file.read_text()))
        except (OSError, UnicodeDecodeError, ValueError):
            return f"{config_file} is unreadable, so {file} cannot be matched to its configuration"
        if recorded != expected:
            return f"{file} was written for another configuration than {config_file}"
    return None


def _verified(file: Path) -> None:
    """Refuse a ``results.nc`` of one of our run folders that fails its checks."""
    folder = file.parent
    if file.name != RESULTS_FILE or not any((folder / n).exists() for n in (CONFIG_FILE, RESULTS_SUM, RUN_MARKER)):
        return  # a NetCDF file of the user's own, not a run folder's merged results
    problem = results_problem(folder)
    if problem:
        raise UsageError(f"{problem}; {_REBUILD}")


def _config_matches(ds: xr.Dataset, file: Path) -> None:
    """The merged results carry the configuration that produced them (as every unit does)."""
    config_file = file.parent / CONFIG_FILE
    if file.name != RESULTS_FILE or not config_file.exists() or "config" not in ds.attrs:
        return
    try:
        same = json.loads(ds.attrs["config"]) == json.loads(config_file.read_text())
    except (OSError, UnicodeDecodeError, ValueError, TypeError):
        same = False
    if not same:
        raise UsageError(f"{file} holds results of another configuration than {config_file}; {_REBUILD}")


def output_path(out: str | os.PathLike) -> Path:
    """``out`` as a Path; refuses ``""`` (it would mean the current folder) and dangling symlinks."""
    if not isinstance(out, (str, os.PathLike)) or os.fspath(out) == "":
        raise UsageError(f"the output folder must be a non-empty path, got {out!r}")
    out = Path(out)
    if out.is_symlink() and not out.exists():
        raise UsageError(f"output folder {out} is a symbolic link to nothing (dangling, or a loop)")
    return out


def check_output_folder(out: str | os.PathLike, kind: str) -> Path:
    """Refuse an output folder we must not write to; returns it as a Path. Touches nothing.

    Args:
        out: the ``--out`` folder.
        kind: ``"sweep"`` (a two-layer sweep, identified by its ``config.json``)
            or ``"run"`` (a walk, deep or analysis preset, identified by
            :data:`RUN_MARKER`).

    Raises:
        UsageError: ``out`` is empty, a dangling symlink or a file; or a folder
            that is not empty and holds no run of ours, or a run of the other kind.
    """
    out = output_path(out)
    if not out.exists():
        return out
    if not out.is_dir():
        raise UsageError(f"output path {out} exists and is not a folder")
    try:
        entries = [p.name for p in out.iterdir() if p.name != ".lock" and not _TMP_NAME.fullmatch(p.name)]
    except OSError as exc:
        raise UsageError(f"cannot read output folder {out}: {exc.strerror}") from None
    if not entries:
        return out
    if RUN_MARKER in entries:
        if kind == "sweep":
            raise UsageError(
                f"{out} holds another kind of thermosgd run ({_describe_run(out)}), not a "
                "two-layer sweep; choose a new --out folder"
            )
        return out
    if CONFIG_FILE in entries:
        if kind == "run":
            raise UsageError(
                f"{out} holds a two-layer sweep ({CONFIG_FILE}), not a run of this preset; choose a new --out folder"
            )
        return out
    shown = ", ".join(sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")
    raise UsageError(
        f"{out} is not empty ({shown}) and holds no thermosgd results; choose a new or empty "
        "--out folder (nothing was written)"
    )


def _describe_run(folder: Path) -> str:
    try:
        run = json.loads((folder / RUN_MARKER).read_text())
        return f"experiment {run['experiment']!r}"
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError):
        return f"see {RUN_MARKER}"


def load(path: str | os.PathLike) -> xr.Dataset:
    """Load a sweep's results as an :class:`xarray.Dataset`.

    Args:
        path: a results folder (containing ``results.nc``) or the ``.nc`` file.

    Returns:
        Dataset with dims ``(lr, batch_size, seed, step)`` (size-1 dims kept),
        coordinate ``step`` = SGD iteration number (0 = initialization), and data
        variables such as ``activation_rate``, ``v_norm``, ``bias_mean``, ``loss``.
        The producing configuration is in ``ds.attrs["config"]`` (JSON).

    Raises:
        UsageError: no results there; or the ``results.nc`` of a run folder fails
            its checksum or belongs to another configuration (the message says
            how to rebuild it).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise UsageError(f"load: expected a results folder or .nc file path, got {type(path).__name__}")
    path = Path(path)
    file = path / RESULTS_FILE if path.is_dir() else path
    if not file.exists():
        where = f"{path} (no {RESULTS_FILE} in it)" if path.is_dir() else f"{path} (no such file or folder)"
        raise UsageError(f"no results found at {where}")
    _verified(file)
    try:
        with xr.open_dataset(file, engine="scipy") as ds:
            out = ds.load()
    except Exception as exc:  # corrupt or foreign file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot read results file {file}: {first}") from None
    _config_matches(out, file)
    for name in ("diverged",):
        if name in out:
            out[name] = out[name].astype(bool)
    return out
