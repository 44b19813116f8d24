"""Comparison of a recomputed result with a stored reference, to a stated tolerance.

Bit identity is a promise within one machine only: on another CPU (another SIMD
width, another BLAS kernel) a float32 reduction may round differently by an ulp
or two, and a trajectory may part by a few ulps. Against files written on
another machine the rule is therefore, for every floating-point element,

    |new - ref| <= RTOL_EPS * eps * max(|new|, |ref|) + ATOL_EPS * eps * scale

where ``eps`` is the machine epsilon of the precision the run *computed* in
(float32: 1.19e-7, float64: 2.22e-16) and ``scale`` the largest finite
magnitude of that variable in the reference (the absolute term covers values
near zero that come from cancellation, such as the mean bias). NaN must match
NaN, and integer and boolean variables (divergence flags, steps) must match
exactly.

Measured when the rule was set (AMD EPYC with AVX-512 against files from an
AVX2 machine, and under ``ATEN_CPU_CAPABILITY=default`` where the parameters
themselves part): at most 4.3 eps relative and 2.9 eps of scale.

With ``THERMOSGD_REFERENCE_EXACT=1`` the comparison is exact instead: use it
when the reference files were regenerated on this machine with the code before
a refactor (``make_reference.py`` at the old commit), where bit identity is
the promise.
"""

from __future__ import annotations

import math
import os

import numpy as np

RTOL_EPS = 8.0
ATOL_EPS = 4.0
EXACT = os.environ.get("THERMOSGD_REFERENCE_EXACT", "") == "1"


def _close(new: np.ndarray, ref: np.ndarray, eps: float, scale: float) -> np.ndarray:
    new64, ref64 = new.astype(np.float64), ref.astype(np.float64)
    both_nan = np.isnan(new64) & np.isnan(ref64)
    same = new64 == ref64  # equal infinities too
    allowed = RTOL_EPS * eps * np.maximum(np.abs(new64), np.abs(ref64)) + ATOL_EPS * eps * scale
    with np.errstate(invalid="ignore"):
        near = np.abs(new64 - ref64) <= allowed
    return both_nan | same | near


def assert_dataset_close(new, ref, *, eps: float, names=None) -> None:
    """Every variable of ``ref`` (or those in ``names``) within the tolerance in ``new``.

    Args:
        new, ref: xarray Datasets; ``new`` may hold more variables.
        eps: machine epsilon of the precision the run computed in.
        names: the variables to compare (default: all of ``ref``'s).
    """
    names = list(ref.data_vars) if names is None else list(names)
    missing = [n for n in names if n not in new.data_vars]
    assert not missing, f"variables missing from the recomputed result: {missing}"
    for dim in ref.dims:
        np.testing.assert_array_equal(new[dim].values, ref[dim].values, err_msg=f"coordinate {dim}")
    for name in names:
        a, b = np.asarray(new[name].values), np.asarray(ref[name].values)
        assert a.shape == b.shape, f"{name}: shape {a.shape} != reference {b.shape}"
        if EXACT or b.dtype.kind not in "fc":
            np.testing.assert_array_equal(a, b, err_msg=name)
            continue
        finite = np.abs(b[np.isfinite(b)])
        scale = float(finite.max()) if finite.size else 0.0
        ok = _close(a, b, eps, scale)
        if not ok.all():
            bad = np.argwhere(~ok)[:5].tolist()
            worst = float(np.nanmax(np.abs(a.astype(np.float64) - b.astype(np.float64))))
            raise AssertionError(
                f"{name}: {int((~ok).sum())} of {ok.size} elements outside {RTOL_EPS:g} eps relative + "
                f"{ATOL_EPS:g} eps x {scale:.3g} (eps = {eps:.3g}); largest difference {worst:.3g}; "
                f"first at {bad}"
            )


def assert_json_close(new, ref, *, eps: float, path: str = "") -> None:
    """Two JSON trees equal in structure, strings and integers; floats within the tolerance.

    A JSON leaf has no variable around it, so the absolute term uses the leaf's own
    magnitude (the rule reduces to ``(RTOL_EPS + ATOL_EPS) * eps`` relative).
    """
    if isinstance(ref, dict):
        assert isinstance(new, dict) and set(new) == set(ref), f"{path}: keys {sorted(new)} != {sorted(ref)}"
        for key in ref:
            assert_json_close(new[key], ref[key], eps=eps, path=f"{path}/{key}")
    elif isinstance(ref, list):
        assert isinstance(new, list) and len(new) == len(ref), f"{path}: list length differs"
        for i, (a, b) in enumerate(zip(new, ref)):
            assert_json_close(a, b, eps=eps, path=f"{path}[{i}]")
    elif isinstance(ref, float) and not EXACT and isinstance(new, (int, float)) and not isinstance(new, bool):
        if math.isnan(ref):
            assert math.isnan(new), f"{path}: {new} != nan"
            return
        allowed = (RTOL_EPS + ATOL_EPS) * eps * max(abs(new), abs(ref))
        assert new == ref or abs(new - ref) <= allowed, f"{path}: {new!r} != {ref!r} (allowed {allowed:.3g})"
    else:
        assert new == ref, f"{path}: {new!r} != {ref!r}"
