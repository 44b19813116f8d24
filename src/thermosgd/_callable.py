"""Deprecated: calling the packages ``thermosgd.sweep`` and ``thermosgd.reproduce``.

``thermosgd.sweep(cfg, out)`` and ``thermosgd.reproduce(names, ...)`` once named
both a subpackage and a function. Python sets ``thermosgd.sweep`` to the
subpackage as soon as any of its modules is imported, so a plain function of
that name cannot exist; the functions are now :func:`thermosgd.run_sweep` and
:func:`thermosgd.run_presets`. Old code keeps working: calling the package
warns (``DeprecationWarning``) and calls the function.
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings


def make_callable(package: str, module: str, function: str, *, instead: str) -> None:
    """Calling the module object ``package`` warns and calls ``module.function`` (imported on first call).

    Args:
        package: the package made callable, e.g. ``"thermosgd.sweep"``.
        module, function: what a call runs.
        instead: the name to call instead, e.g. ``"thermosgd.run_sweep"``.
    """

    class CallablePackage(types.ModuleType):
        def __call__(self, *args, **kwargs):
            warnings.warn(
                f"calling {package}(...) is deprecated; call {instead}(...) instead",
                DeprecationWarning,
                stacklevel=2,
            )
            return getattr(importlib.import_module(module), function)(*args, **kwargs)

    CallablePackage.__call__.__doc__ = f"Deprecated alias of :func:`{instead}`."
    sys.modules[package].__class__ = CallablePackage
