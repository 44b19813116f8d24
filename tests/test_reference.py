"""Bit-identity across refactors: today's code reproduces results saved before issue 9's layout.

The reference files in ``tests/reference/`` were written by
``tests/reference/make_reference.py`` with the pre-refactor code; the runs are
re-done here with today's code, same configurations and seeds, and must match
exactly (not to tolerance).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

HERE = Path(__file__).parent / "reference"
_spec = importlib.util.spec_from_file_location("reference_runs", HERE / "reference_runs.py")
runs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(runs)


def _assert_identical(new: xr.Dataset, ref: xr.Dataset) -> None:
    assert set(new.data_vars) >= set(ref.data_vars)
    for name in ref.data_vars:
        a, b = np.asarray(new[name].values), np.asarray(ref[name].values)
        assert a.shape == b.shape, name
        np.testing.assert_array_equal(a, b, err_msg=name)
    for dim in ref.dims:
        np.testing.assert_array_equal(new[dim].values, ref[dim].values, err_msg=dim)


@pytest.mark.parametrize("name", ["fig3", "fig7"])
def test_twolayer_presets_bit_identical(name):
    ref = xr.load_dataset(HERE / f"{name}.nc")
    _assert_identical(runs.twolayer(name), ref)


def test_deep_fig2_middle_bit_identical(tmp_path):
    ref = xr.load_dataset(HERE / "fig2-middle.nc")
    _assert_identical(runs.deep_fig2_middle(tmp_path / "run"), ref)


def test_walk_suite_bit_identical():
    ref = json.loads((HERE / "walk.json").read_text())
    new = json.loads(json.dumps(runs.walk_suite(), sort_keys=True))
    assert new == ref
