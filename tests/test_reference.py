"""Today's code reproduces the stored reference results, on any machine.

The reference files in ``tests/reference/`` were written by
``tests/reference/make_reference.py`` (the float32 ones with the code before
issue 9's layout, on an AVX2 machine). The runs are re-done here with today's
code, same configurations and seeds, and compared to the tolerance stated in
``tests/reference/compare.py``: a few eps of the precision the run computed in,
because another CPU may round a reduction differently (issue 25: one float32
ulp on AVX-512). Integer and boolean results (divergence flags and steps) must
match exactly. Bit identity is tested where it is a promise, within one
machine: unit layouts, executors and resume (``tests/sweep/``), and against
references regenerated on the same machine with ``THERMOSGD_REFERENCE_EXACT=1``.

``test_reference_under_other_simd`` re-runs these comparisons in fresh
processes under other ATen CPU capabilities (``ATEN_CPU_CAPABILITY``), which
changes the kernels that round, the condition under which the exact comparison
broke.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

HERE = Path(__file__).parent / "reference"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"reference_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runs = _load("reference_runs")
compare = _load("compare")

EPS32 = float(np.finfo(np.float32).eps)
EPS64 = float(np.finfo(np.float64).eps)
# Variables that follow the parameters themselves: if these part, the trajectory parted.
TRAJECTORY = ("v_norm", "w_norm", "bias_mean", "diverged", "diverged_step")


@pytest.mark.parametrize(
    ("name", "file", "dtype", "eps"),
    [
        ("fig3", "fig3.nc", "float32", EPS32),
        ("fig7", "fig7.nc", "float32", EPS32),
        ("fig3", "fig3-float64.nc", "float64", EPS64),
    ],
)
def test_twolayer_presets_match_reference(name, file, dtype, eps):
    ref = xr.load_dataset(HERE / file)
    new = runs.twolayer(name, dtype)
    assert new["v_norm"].dtype == np.dtype(dtype)
    # First the trajectory (parameters), then every measured instrument.
    compare.assert_dataset_close(new, ref, eps=eps, names=[n for n in TRAJECTORY if n in ref.data_vars])
    compare.assert_dataset_close(new, ref, eps=eps)


def test_deep_fig2_middle_matches_reference(tmp_path):
    ref = xr.load_dataset(HERE / "fig2-middle.nc")
    # Stored as float64, computed in float32 (torch's default dtype): float32's eps.
    compare.assert_dataset_close(runs.deep_fig2_middle(tmp_path / "run"), ref, eps=EPS32)


def test_walk_suite_matches_reference():
    ref = json.loads((HERE / "walk.json").read_text())
    new = json.loads(json.dumps(runs.walk_suite(), sort_keys=True))
    compare.assert_json_close(new, ref, eps=EPS64)


def test_tolerance_catches_a_real_change():
    """The rule is not vacuous: 100 eps on one element, or a flipped flag, fails."""
    ref = xr.load_dataset(HERE / "fig3.nc")
    moved = ref.copy(deep=True)
    moved["activation_rate"].values[0, 0, 0, 5] *= 1 + 100 * EPS32
    with pytest.raises(AssertionError, match="activation_rate"):
        compare.assert_dataset_close(moved, ref, eps=EPS32)
    flipped = ref.copy(deep=True)
    flipped["diverged"].values[0, 0, 0] = ~flipped["diverged"].values[0, 0, 0]
    with pytest.raises(AssertionError, match="diverged"):
        compare.assert_dataset_close(flipped, ref, eps=EPS32)
    nudged = ref.copy(deep=True)
    nudged["activation_rate"].values[0, 0, 0, 5] *= 1 + 2 * EPS32  # a rounding difference passes
    compare.assert_dataset_close(nudged, ref, eps=EPS32)


@pytest.mark.parametrize("capability", ["default", "avx2"])
def test_reference_under_other_simd(capability):
    """The stored-reference comparisons pass when ATen dispatches to other SIMD kernels.

    ``default`` (no vector kernels) parts the parameters by a few ulps over the
    120 steps (measured: up to 2.9 eps of scale), which the tolerance must absorb.
    """
    env = dict(os.environ, ATEN_CPU_CAPABILITY=capability, PYTHONWARNINGS="error")
    tests = [
        f"{__file__}::{t}"
        for t in (
            "test_twolayer_presets_match_reference",
            "test_deep_fig2_middle_matches_reference",
            "test_walk_suite_matches_reference",
        )
    ]
    probe = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.stdout.strip() == capability.upper(), probe.stdout + probe.stderr
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=--import-mode=importlib",
            *tests,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).parent.parent,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "5 passed" in done.stdout, done.stdout[-2000:]
