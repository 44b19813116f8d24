"""Checks of the arguments of the public Python functions, shared by every layer.

Each raises :class:`~thermosgd.errors.UsageError` with one line naming the
argument, as the configuration schema does for config keys.
"""

from __future__ import annotations

import numbers
from typing import Any

from thermosgd.config import SEED_LIMIT, SweepConfig, check_device_name
from thermosgd.errors import UsageError

__all__ = ["require_config", "replica_seeds", "torch_device"]


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


def torch_device(name: Any, where: str = "device"):
    """The ``torch.device`` for "cpu", "cuda" or "cuda:N", refusing a GPU this machine lacks.

    Raises:
        UsageError: a misspelled name, or "cuda" when ``torch.cuda.is_available()``
            is False, or "cuda:N" beyond the GPUs present (one line each).
    """
    import torch  # lazy: this module is imported by the CLI before torch is needed

    name = check_device_name(name, where)
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UsageError(f'{where} = {name!r}, but no CUDA GPU is available to torch here; use "cpu"')
    dev = torch.device(name)
    count = torch.cuda.device_count()
    if dev.index is not None and dev.index >= count:
        raise UsageError(f"{where} = {name!r}, but this machine has {count} CUDA GPU(s) (cuda:0 to cuda:{count - 1})")
    return dev
