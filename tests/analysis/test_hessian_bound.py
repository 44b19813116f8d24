"""The Hessian-trace bound's analysis against synthetic sweeps whose answers are known.

Curves are built exactly (no training): the activation rate and the bound are
functions of t·η^α with a known α, the trace a fixed fraction of the bound plus
seeded Gaussian noise of a stated standard error. Tolerances are stated per test.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from thermosgd.analysis.hessian_bound import (
    BOUND,
    DRIVER,
    STDERR,
    TRACE,
    assess_setting,
    check_bound,
    check_fall,
)
from thermosgd.analysis.verdict import AGREES, DISAGREES, INCONCLUSIVE, NOT_MEASURED, OPPOSITE

LRS = (0.025, 0.05, 0.1)
STEPS = np.unique(np.round(np.geomspace(1, 4000, 40)).astype(int))
SEEDS = 8
SE = 0.01  # Hutchinson's standard error written into every synthetic step


def sweep(alpha: float = 2.0, *, trace_slope: float = -1.0, driver_falls: bool = True, seed: int = 0) -> xr.Dataset:
    """dims (lr, batch_size, seed, step); the bound falls as exp(−t·η^α/τ), the trace is 0.3 × bound + noise."""
    rng = np.random.default_rng(seed)
    lr = np.array(LRS)[:, None, None, None]
    t = STEPS[None, None, None, :].astype(float)
    x = t * (lr / 0.05) ** alpha / 1000.0  # the reference η = 0.05 falls on a 1000-step scale
    shape = (len(LRS), 1, SEEDS, len(STEPS))
    seed_scatter = 1 + 0.01 * rng.standard_normal((len(LRS), 1, SEEDS, 1))
    fall = 1 - np.exp(-x)
    driver = (0.5 - 0.2 * fall if driver_falls else np.full_like(x, 0.5)) * seed_scatter
    bound = (5.0 - 2.0 * fall) * seed_scatter
    trace = 0.3 * (5.0 + 2.0 * trace_slope * fall) * seed_scatter + SE * rng.standard_normal(shape)
    dims = ("lr", "batch_size", "seed", "step")
    return xr.Dataset(
        {
            DRIVER: (dims, np.broadcast_to(driver, shape).copy()),
            BOUND: (dims, np.broadcast_to(bound, shape).copy()),
            TRACE: (dims, trace),
            STDERR: (dims, np.full(shape, SE)),
            "diverged": (dims[:3], np.zeros(shape[:3], dtype=bool)),
        },
        coords={"lr": list(LRS), "batch_size": [1], "seed": np.arange(SEEDS), "step": STEPS},
    )


def test_no_violation_when_the_trace_stays_below():
    check = check_bound(sweep())
    assert check.checked == len(LRS) * SEEDS * len(STEPS)
    assert check.violations == 0 and check.judgement.status == AGREES
    assert 0.29 < check.max_ratio < 0.32  # 0.3 × bound, plus noise of 0.01 on a trace of ≥ 0.9


def test_a_violation_is_detected_counted_and_located():
    ds = sweep()
    bound = float(ds[BOUND][2, 0, 5, 7])
    ds[TRACE][2, 0, 5, 7] = bound + 5 * SE  # 5 s.e. above: a violation
    ds[TRACE][0, 0, 1, 3] = float(ds[BOUND][0, 0, 1, 3]) + 2 * SE  # 2 s.e. above: within the tolerance
    check = check_bound(ds)
    assert check.violations == 1 and check.judgement.status == DISAGREES
    assert "1 of" in check.judgement.reason and "a bug or a broken assumption" in check.judgement.reason
    w = check.worst
    assert (w["lr"], w["seed"], w["step"]) == (0.1, 5, int(STEPS[7]))
    assert w["trace"] == pytest.approx(bound + 5 * SE)


def test_diverged_replicas_and_missing_numbers_are_not_checked():
    ds = sweep()
    ds[TRACE][1, 0, 2, :] = 1e9  # far above the bound, but the replica diverged
    ds["diverged"][1, 0, 2] = True
    ds[BOUND][0, 0, 0, 0] = np.nan  # a step without a bound (a model the bound does not cover)
    check = check_bound(ds)
    assert check.violations == 0
    assert check.checked == len(LRS) * SEEDS * len(STEPS) - len(STEPS) - 1
    assert check_bound(ds.drop_vars(BOUND)).judgement.status == NOT_MEASURED


@pytest.mark.parametrize(
    ("trace_slope", "driver_falls", "expected"),
    [(-1.0, True, AGREES), (1.0, True, OPPOSITE), (-1.0, False, INCONCLUSIVE)],
)
def test_direction_of_the_trace_with_the_activation_rate(trace_slope, driver_falls, expected):
    fall = check_fall(sweep(trace_slope=trace_slope, driver_falls=driver_falls), TRACE)
    assert fall.judgement.status == expected, fall.judgement.reason
    top = max(fall.changes, key=lambda c: c.lr)
    # the change at η = 0.1 is 0.3 × 2 × (1 − e^{-4 · 4000/1000}) ≈ 0.6 in size, the interval over 8 seeds within ±0.05
    assert abs(top.change) == pytest.approx(0.6, abs=0.05) and top.n_seeds == SEEDS


@pytest.mark.parametrize("alpha", [2.0, 1.0])
def test_the_fitted_exponent_recovers_the_one_built_in(alpha):
    result = assess_setting(sweep(alpha), "synthetic", n_boot=200)
    by_metric = {v.metric: v for v in result.exponents}
    for metric in (BOUND, TRACE):
        v = by_metric[metric]
        assert v.exponent == pytest.approx(alpha, abs=0.1), v.note  # exact curves; noise of 1% of the trace
        assert v.ci_low <= alpha <= v.ci_high
    assert by_metric[BOUND].status == (AGREES if alpha == 2.0 else DISAGREES)


def test_rows_one_per_claim_part():
    rows = assess_setting(sweep(), "synthetic", n_boot=200).claims()
    assert [r.rule for r in rows] == ["bound", "follows", "follows", "exponent", "exponent"]
    assert all(r.setting == "synthetic" and r.status == AGREES for r in rows), [r.reason for r in rows]
    assert rows[0].measured.startswith(f"0 of {len(LRS) * SEEDS * len(STEPS)} steps above")
