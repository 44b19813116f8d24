"""Where the two-layer engine's compiled loops come from: numba, imported with its on-disk cache
in a user cache folder, and the module of loops it compiles (:mod:`thermosgd.twolayer._kernels`).

Its own module so that the compiled backend (:mod:`~thermosgd.twolayer.fused`) and the Philox
draws (:mod:`~thermosgd.twolayer.philox`, used by the sample streams) share it without either
importing the other.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    """Where numba caches the compiled kernels: ``$NUMBA_CACHE_DIR`` if set, else a user cache folder
    (``$XDG_CACHE_HOME/thermosgd/numba``, default ``~/.cache/thermosgd/numba``), never the source tree."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "thermosgd" / "numba"


def numba_module():
    """numba, imported with its on-disk cache pointed at :func:`cache_dir` (raises ImportError)."""
    where = str(cache_dir())
    os.environ.setdefault("NUMBA_CACHE_DIR", where)  # read when numba is first imported
    import numba

    config: Any = numba.config  # numba's config module is typed as it reads its environment
    if not config.CACHE_DIR:  # numba imported earlier without the variable
        config.CACHE_DIR = where
    return numba


def available() -> bool:
    """Whether numba can be imported."""
    try:
        numba_module()
    except ImportError:
        return False
    return True


def kernels():
    """The module of compiled loops (:mod:`thermosgd.twolayer._kernels`; compiled on first use,
    cached on disk by numba under :func:`cache_dir`)."""
    numba_module()
    from thermosgd.twolayer import _kernels

    return _kernels
