"""Packages that are also the public function of the same name.

``thermosgd.sweep`` and ``thermosgd.reproduce`` name both a subpackage and a
public function (``thermosgd.sweep(cfg, out)``). Python's import system sets
``thermosgd.sweep`` to the subpackage as soon as any of its modules is imported
(``thermosgd.load`` imports ``thermosgd.sweep.store``), so a plain function of that
name would be replaced by a module and ``thermosgd.sweep(cfg, out)`` would fail
depending on what ran before. Instead, the subpackage itself is made callable.
"""

from __future__ import annotations

import importlib
import sys
import types


def make_callable(package: str, module: str, function: str) -> None:
    """Calling the module object ``package`` calls ``module.function`` (imported on first call)."""

    class CallablePackage(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return getattr(importlib.import_module(module), function)(*args, **kwargs)

    CallablePackage.__call__.__doc__ = f"Same as :func:`{module}.{function}`."
    sys.modules[package].__class__ = CallablePackage
