"""Results on disk: one self-describing folder per sweep.

Layout of a results folder::

    DIR/
      config.json     the full, validated configuration that produced it
      results.nc      NetCDF (xarray) with dims (lr, batch_size, seed, step)
      results.nc.sha256  its SHA-256 and the fingerprint of config.json; checked
                      by ``load`` and ``thermosgd status``
      figures/        PNG and PDF figures made from results.nc only

Every file is written under a temporary name ``.thermosgd-tmp-PID-TOKEN-NAME``,
created exclusively and without following symbolic links, and renamed into
place (a rename replaces a link, never writes through it). TOKEN is 8 random
hex digits and 8 more derived from them and NAME: only names that carry a valid
token and whose writer (PID) is gone are ever deleted, so a user's file that
merely looks temporary is never touched.

NetCDF is written with SciPy's backend (NetCDF-3, 64-bit offsets), which every
NetCDF reader (xarray, netCDF4, ncdump, R, Julia) can open and which needs no
compiled HDF5 library.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np
import xarray as xr

from thermosgd.errors import UsageError
from thermosgd.files import changed_inputs, file_sha256, fingerprint, open_regular

RESULTS_FILE = "results.nc"
RESULTS_SUM = RESULTS_FILE + ".sha256"
CONFIG_FILE = "config.json"
#: Marks a folder written by ``thermosgd reproduce`` for a walk, deep or analysis preset.
RUN_MARKER = ".thermosgd-run.json"
SWEEP_DIMS = ("lr", "batch_size", "seed", "step")
#: ``{absolute path: SHA-256}`` of the run's input files (see :func:`check_inputs`).
INPUTS_FILE = "inputs.json"
LOCK_FILE = ".lock"
_TMP_PREFIX = ".thermosgd-tmp-"
_TMP_NAME = re.compile(r"\.thermosgd-tmp-(\d+)-([0-9a-f]{8})([0-9a-f]{8})-(.+)")
_NO_FOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
_REBUILD = "re-run the same command (same --out) to rebuild it (a sweep re-merges its finished units)"


def _check_digits(rand: str, name: str) -> str:
    return hashlib.sha256(f"{rand}:{name}".encode()).hexdigest()[:8]


def temporary_path(path: Path, pid: int | None = None) -> Path:
    """A fresh temporary name for ``path``: ``.thermosgd-tmp-PID-TOKEN-NAME`` (see the module docstring).

    ``pid`` (default: this process) is for tests that play an earlier writer.
    """
    path = Path(path)
    rand = secrets.token_hex(4)
    pid = os.getpid() if pid is None else pid
    return path.with_name(f"{_TMP_PREFIX}{pid}-{rand}{_check_digits(rand, path.name)}-{path.name}")


def _our_temporary(name: str) -> int | None:
    """The writer's pid if ``name`` is one of our temporaries' names (valid token), else None."""
    m = _TMP_NAME.fullmatch(name)
    if m is None or _check_digits(m[2], m[4]) != m[3]:
        return None
    return int(m[1])


def _plain_file(path: Path) -> bool:
    """A regular file with one name (not a symbolic link, not hard-linked elsewhere)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_nlink == 1


def safe_folder(folder: Path) -> Path:
    """Create ``folder`` (a folder inside a run folder); refuse one that is a symbolic link."""
    folder = Path(folder)
    if folder.is_symlink():
        raise UsageError(f"{folder} is a symbolic link; thermosgd never writes through links in a results folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create folder {folder}: {exc.strerror or exc}") from None
    return folder


@contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Write ``path`` through a temporary created exclusively, then rename it into place.

    The temporary is opened with ``O_CREAT | O_EXCL | O_NOFOLLOW``: nothing
    planted under its name (a symbolic link, a file) is ever opened. The rename
    replaces whatever entry ``path`` was (a link is replaced, never followed).
    On any error the temporary is removed and ``path`` is left as it was.
    """
    path = Path(path)
    safe_folder(path.parent)
    if path.is_dir() and not path.is_symlink():
        raise UsageError(f"cannot write {path}: a folder of that name is in the way")
    tmp = temporary_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_FOLLOW, 0o644)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)  # unlink removes a name; it never follows a link
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and without following links (see :func:`atomic_file`)."""
    with atomic_file(path, "w") as fh:
        fh.write(text)
    return Path(path)


def read_meta(path: Path, limit: int = 1 << 20) -> str:
    """A small metadata file of a run folder (config, checksum, marker) as text.

    Raises:
        FileNotFoundError: it does not exist.
        UsageError: it is not a regular file (a FIFO would block), too large, or not UTF-8.
    """
    if not os.path.lexists(path):
        raise FileNotFoundError(path)
    with open_regular(path) as fh:
        raw = fh.read(limit + 1)
    if len(raw) > limit:
        raise UsageError(f"{path} is larger than {limit} bytes; it is not a file thermosgd wrote")
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text; it is not a file thermosgd wrote") from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a live process of another user
        return True
    return True


def stale_temporaries(out: str | os.PathLike, folders: tuple[str, ...] = ("", "units")) -> list[Path]:
    """Our temporaries in ``out`` whose writer is gone (plain files with a valid token only).

    A temporary of this very process counts as stale too: a caller holding the
    folder lock has not started writing yet, so it was left by an earlier process
    that had the same pid.
    """
    out = Path(out)
    found = []
    for folder in (out / f for f in folders):
        if folder.is_symlink() or not folder.is_dir():
            continue
        for p in folder.iterdir():
            pid = _our_temporary(p.name)
            if pid is not None and _plain_file(p) and (pid == os.getpid() or not _alive(pid)):
                found.append(p)
    return sorted(found)


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
    with atomic_file(path) as fh:
        _netcdf_ready(ds).to_netcdf(fh, engine="scipy", format="NETCDF3_64BIT")  # type: ignore[call-overload]
    return path


def write_config(config: dict, folder: str | os.PathLike) -> Path:
    return write_text(Path(folder) / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=True) + "\n")


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
    write_text(sums, f"{file_sha256(path)}  {RESULTS_FILE}\nconfig {config_fingerprint(config)}\n")
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
        lines = read_meta(sums).split("\n")
    except FileNotFoundError:
        return f"{file} has no checksum file {RESULTS_SUM} (written by an older thermosgd, or interrupted)"
    except UsageError:
        return f"{file}'s checksum file {RESULTS_SUM} is unreadable"
    digest = lines[0].split()[0] if lines and lines[0].split() else ""
    try:
        actual = file_sha256(file)
    except UsageError as exc:
        return str(exc)
    if digest != actual:
        return f"{file} does not match its checksum (corrupted, truncated or changed after it was written)"
    config_file = folder / CONFIG_FILE
    if config_file.exists():
        recorded = next((ln.split()[1] for ln in lines if ln.startswith("config ") and len(ln.split()) == 2), None)
        try:
            expected = config_fingerprint(json.loads(read_meta(config_file)))
        except (OSError, UsageError, ValueError, RecursionError):
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
        same = json.loads(ds.attrs["config"]) == json.loads(read_meta(config_file))
    except (OSError, UsageError, ValueError, TypeError, RecursionError):
        same = False
    if not same:
        raise UsageError(f"{file} holds results of another configuration than {config_file}; {_REBUILD}")


def _first_difference(a: dict, b: dict, prefix: str = "") -> str:
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            diff = _first_difference(va, vb, f"{prefix}[{key}] ")
            if diff:
                return diff
        elif va != vb:
            return f"{prefix}{key}: {va!r} there, {vb!r} now"
    return ""


class _Stamped(Protocol):
    """What a folder's config.json records: a :class:`~thermosgd.config.SweepConfig` or a study's stamp."""

    def to_dict(self) -> dict: ...


def read_config(path: Path) -> dict:
    """A folder's config.json as a dict; refuses an unreadable or foreign one in one line."""
    try:
        raw = json.loads(read_meta(path))
    except (OSError, UsageError, ValueError, RecursionError):
        raise UsageError(f"{path} is unreadable; choose a new output folder", param="out") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path} is not a sweep configuration; choose a new output folder", param="out")
    return raw


def check_config(out: Path, cfg: _Stamped) -> None:
    """Refuse a folder that holds results of another configuration (a sweep's config or a study's stamp)."""
    path = Path(out) / CONFIG_FILE
    if not path.exists():
        return
    old = read_config(path)
    new = json.loads(json.dumps(cfg.to_dict()))
    if old != new:
        raise UsageError(
            f"{out} holds results of a different config ({_first_difference(old, new)}); choose a new output folder",
            param="out",
        )


def output_path(out: str | os.PathLike) -> Path:
    """``out`` as a Path with ``~`` expanded once, here, for every later use.

    Refuses ``""`` (it would mean the current folder) and dangling symlinks.
    (Expanding here matters: xarray expands ``~`` itself, so an unexpanded
    ``~/x`` would put some files under the home folder and others under ``./~``.)
    """
    if not isinstance(out, (str, os.PathLike)) or os.fspath(out) == "":
        raise UsageError(f"the output folder must be a non-empty path, got {out!r}")
    text = os.fspath(out)
    if isinstance(text, bytes):
        raise UsageError(f"the output folder must be a text path, got {out!r}")
    out = Path(os.path.expanduser(text))
    if out.is_symlink() and not out.exists():
        raise UsageError(f"output folder {out} is a symbolic link to nothing (dangling, or a loop)")
    return out


def _ignorable(entry: Path) -> bool:
    """A plain ``.lock`` holding at most a pid, or a plain temporary of ours: they do not make a folder ours
    or the user's. Anything else (a symbolic link, a dotfile, a look-alike) counts."""
    if not _plain_file(entry):
        return False
    if entry.name == LOCK_FILE:
        try:
            with open_regular(entry) as fh:
                return re.fullmatch(rb"\d*\n?", fh.read(32)) is not None
        except (OSError, UsageError):
            return False
    return _our_temporary(entry.name) is not None


def _marker(out: Path) -> dict | None:
    try:
        run = json.loads(read_meta(out / RUN_MARKER))
    except (OSError, UsageError, ValueError, RecursionError):
        return None
    return run if isinstance(run, dict) else None


def check_output_folder(out: str | os.PathLike, kind: str, command: str | None = None) -> Path:
    """Refuse an output folder we must not write to; returns it as a Path. Touches nothing.

    Args:
        out: the ``--out`` folder.
        kind: ``"sweep"`` (a two-layer sweep, identified by its ``config.json``),
            ``"run"`` (a walk, deep or analysis preset of ``thermosgd reproduce``,
            identified by :data:`RUN_MARKER`) or ``"command"`` (the ``--out`` of
            ``thermosgd walk``, ``drift``, ...; a marker naming ``command``).
        command: the subcommand, for ``kind="command"``.

    Raises:
        UsageError: ``out`` is empty, a dangling symlink or a file; or a folder
            that is not empty and holds no run of ours, or a run of another kind.
    """
    out = output_path(out)
    if not os.path.lexists(out):
        return out
    if not out.is_dir():
        raise UsageError(f"output path {out} exists and is not a folder")
    try:
        entries = [p.name for p in out.iterdir() if not _ignorable(p)]
    except OSError as exc:
        raise UsageError(f"cannot read output folder {out}: {exc.strerror}") from None
    if not entries:
        return out
    ours = {n for n in (RUN_MARKER, CONFIG_FILE) if n in entries and not (out / n).is_symlink()}
    if RUN_MARKER in ours:
        run = _marker(out)
        made_by = run.get("command") if run is not None else None
        if kind == "sweep" or (kind == "run" and made_by) or (kind == "command" and made_by != command):
            raise UsageError(
                f"{out} holds another kind of thermosgd run ({_describe_run(out)}), not "
                f"{_what(kind, command)}; choose a new output folder",
                param="out",
            )
        return out
    if CONFIG_FILE in ours:
        if kind != "sweep":
            raise UsageError(
                f"{out} holds a two-layer sweep ({CONFIG_FILE}), not {_what(kind, command)}; "
                "choose a new output folder",
                param="out",
            )
        return out
    shown = ", ".join(sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")
    raise UsageError(
        f"{out} is not empty ({shown}) and holds no thermosgd results (nothing was written); "
        "choose a new or empty output folder",
        param="out",
    )


def _what(kind: str, command: str | None) -> str:
    return {"sweep": "a two-layer sweep", "run": "a run of this preset"}.get(
        kind, f"the output of `thermosgd {command}`"
    )


def claim_command_folder(out: str | os.PathLike, command: str) -> Path:
    """Check ``out`` for ``thermosgd COMMAND --out`` and mark it as that command's (before its files are written).

    Raises:
        UsageError: see :func:`check_output_folder` (nothing is written then).
    """
    return mark_command_folder(check_output_folder(out, "command", command), command)


def mark_command_folder(out: Path, command: str) -> Path:
    """Mark ``out`` (already checked by :func:`check_output_folder`) as ``thermosgd COMMAND --out``'s."""
    safe_folder(out)
    if _marker(out) is None:
        write_text(out / RUN_MARKER, json.dumps({"command": command}) + "\n")
    return out


def unlink_links(folder: Path, names) -> None:
    """Remove symbolic links named ``names`` in our ``folder`` before a writer that follows links
    (matplotlib, a library's ``open``) writes there: the link goes, its target is never touched."""
    for name in names:
        if (Path(folder) / name).is_symlink():
            (Path(folder) / name).unlink()


def check_inputs(folder: str | os.PathLike, files) -> None:
    """Record the SHA-256 of a run's input files in ``folder/inputs.json``, or refuse changed ones.

    The first run records them; a re-run or resume whose input files differ from
    the recorded ones is refused, so results never mix old and new data.
    Call it while holding the folder's lock, before any result is written.

    Raises:
        UsageError: an input file changed (or the set of input files did); the
            message names the file and says to start fresh with a new --out.
    """
    path = Path(folder) / INPUTS_FILE
    now = fingerprint(files)
    try:
        recorded = json.loads(read_meta(path))
    except FileNotFoundError:
        write_text(path, json.dumps(now, indent=2, sort_keys=True) + "\n")
        return
    except (UsageError, ValueError, RecursionError):
        recorded = None
    if not isinstance(recorded, dict):
        raise UsageError(
            f"{path} is damaged, so the inputs of the run in {folder} are unknown; choose a new output folder",
            param="out",
        )
    why = changed_inputs(recorded, now)
    if why:
        raise UsageError(
            f"{why}; the results in {folder} were computed from the old file (nothing was changed). "
            "To use the new one, choose a new output folder",
            param="out",
        )


def _describe_run(folder: Path) -> str:
    try:
        run = json.loads(read_meta(folder / RUN_MARKER))
        return f"experiment {run['experiment']!r}" if "command" not in run else f"`thermosgd {run['command']}`"
    except (OSError, UsageError, ValueError, TypeError, KeyError, RecursionError):
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
    path = Path(os.path.expanduser(os.fspath(path)))
    file = path / RESULTS_FILE if path.is_dir() else path
    if not file.exists():
        where = f"{path} (no {RESULTS_FILE} in it)" if path.is_dir() else f"{path} (no such file or folder)"
        raise UsageError(f"no results found at {where}")
    open_regular(file, "results file").close()  # a FIFO or device would block the NetCDF reader
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
