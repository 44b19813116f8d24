"""The plain public names run_sweep and run_presets, and the deprecated calls of the packages."""

import importlib

import pytest

import thermosgd
from thermosgd.errors import UsageError


def test_plain_names_are_the_functions():
    assert thermosgd.run_sweep is importlib.import_module("thermosgd.sweep.run").run_sweep
    assert thermosgd.run_presets is importlib.import_module("thermosgd.reproduce.run").reproduce
    assert {"run_sweep", "run_presets"} <= set(thermosgd.__all__)


@pytest.mark.parametrize(
    "call, new, message",
    [
        (lambda: thermosgd.sweep({"model": {}}, "unused"), "thermosgd.run_sweep", "expected a SweepConfig"),
        (lambda: thermosgd.reproduce(["fig3"], out="", quick=True), "thermosgd.run_presets", "non-empty path"),
    ],
)
def test_calling_a_package_warns_and_forwards(call, new, message):
    importlib.import_module("thermosgd.sweep.store")  # the subpackage is already an attribute of thermosgd
    with pytest.warns(DeprecationWarning, match=f"call {new}"), pytest.raises(UsageError, match=message):
        call()
