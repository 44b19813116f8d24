"""Checks of the arguments of the public Python functions, shared by every layer.

Each raises :class:`~thermosgd.errors.UsageError` with one line naming the
argument, as the configuration schema does for config keys.
"""

from __future__ import annotations

import numbers
from typing import Any

from thermosgd.config import SEED_LIMIT, SweepConfig
from thermosgd.errors import UsageError

__all__ = ["require_config", "replica_seeds"]


def require_config(cfg: Any, where: str) -> SweepConfig:
    """``cfg`` itself if it is a :class:`SweepConfig`; else a UsageError saying how to make one."""
    if not isinstance(cfg, SweepConfig):
        raise UsageError(
            f"{where}: expected a SweepConfig, got {type(cfg).__name__}; build one with "
            "thermosgd.config_from_dict({...}) or thermosgd.load_config('grid.toml')"
        )
    return cfg


def replica_seeds(seeds: Any, where: str = "seeds") -> list[int]:
    """A non-empty list of distinct replica seeds in ``[0, 2^31)`` (NumPy integers accepted)."""
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise UsageError(f"{where} must be a list of integers, got {seeds!r}")
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or not 0 <= int(s) < SEED_LIMIT:
            raise UsageError(f"{where} must be integers in [0, 2^31), got {s!r}")
        out.append(int(s))
    if not out:
        raise UsageError(f"{where} must not be empty")
    if len(set(out)) != len(out):
        raise UsageError(f"{where} has repeated values: {out}")
    return out
