"""thermosgd: the thermophoresis of SGD (Wei & Schwab), runnable and measurable.

Public entry points:

- :func:`train` — train a two-layer ensemble in memory (no files).
- :func:`run_sweep` — run or resume a two-layer sweep into a results folder; :func:`status`.
- :func:`study` — the same experiment (lr × |B| × seeds, instruments, resume) for any ``nn.Module``.
- :func:`load` — a sweep's results as an ``xarray.Dataset`` (lr, batch_size, seed, step).
- :func:`fit_collapse` — the exponent that collapses a sweep's curves, with its interval.
- :mod:`instruments` — instruments for any ``nn.Module``.
- :mod:`walk` — the random walk of Sec. 3.
- :func:`run_presets` — the paper's presets end to end.

``thermosgd.sweep(...)`` and ``thermosgd.reproduce(...)`` still work and warn:
they are deprecated aliases of :func:`run_sweep` and :func:`run_presets`.
- :class:`SweepConfig`, :func:`config_from_dict`, :func:`load_config` — the one config schema.
"""

from thermosgd.config import SweepConfig
from thermosgd.config import from_dict as config_from_dict
from thermosgd.config import load_toml as load_config
from thermosgd.errors import UsageError

__version__ = "0.2.0"

# Heavy parts (torch, xarray, matplotlib) load on first use, so that `import
# thermosgd`, the CLI's --help and every Dask / process worker start fast.
_LAZY = {
    "train": ("thermosgd.twolayer.engine", "train"),
    "run_sweep": ("thermosgd.sweep.run", "run_sweep"),
    "run_presets": ("thermosgd.reproduce.run", "reproduce"),
    "sweep": ("thermosgd.sweep", None),  # the package; calling it is deprecated (thermosgd._callable)
    "study": ("thermosgd.studies.run", "study"),
    "status": ("thermosgd.sweep.run", "status"),
    "load": ("thermosgd.sweep.store", "load"),
    "fit_collapse": ("thermosgd.analysis.collapse", "fit_collapse"),
    "reproduce": ("thermosgd.reproduce", None),
    "instruments": ("thermosgd.instruments", None),
    "walk": ("thermosgd.walk", None),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        mod = importlib.import_module(module)
        value = mod if attr is None else getattr(mod, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'thermosgd' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)


__all__ = [
    "SweepConfig",
    "UsageError",
    "config_from_dict",
    "fit_collapse",
    "instruments",
    "load",
    "load_config",
    "reproduce",
    "run_presets",
    "run_sweep",
    "status",
    "study",
    "sweep",
    "train",
    "walk",
    "__version__",
]
