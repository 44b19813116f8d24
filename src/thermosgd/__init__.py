"""thermosgd: the thermophoresis of SGD (Wei & Schwab), runnable and measurable.

Public entry points:

- :func:`load` — a sweep's results as an ``xarray.Dataset`` (lr, batch_size, seed, step).
- :func:`sweep` — run or resume a two-layer sweep into a results folder.
- :func:`train` — train a two-layer ensemble in memory (no files).
- :class:`SweepConfig`, :func:`config_from_dict`, :func:`load_config` — the one config schema.
- :func:`reproduce` — the paper's figures.
"""

from thermosgd.errors import UsageError
from thermosgd.sweep.config import SweepConfig, from_dict as config_from_dict, load_toml as load_config
from thermosgd.sweep.run import run_sweep as sweep, status
from thermosgd.sweep.store import load
from thermosgd.twolayer.engine import train

__version__ = "0.1.0"


def __getattr__(name: str):
    # `reproduce` pulls in matplotlib; import it only when asked for, so that
    # `import thermosgd` (and every Dask / process worker) stays light.
    if name == "reproduce":
        from thermosgd.reproduction import reproduce

        return reproduce
    raise AttributeError(f"module 'thermosgd' has no attribute {name!r}")

__all__ = [
    "SweepConfig", "UsageError", "config_from_dict", "load", "load_config", "reproduce",
    "status", "sweep", "train", "__version__",
]
