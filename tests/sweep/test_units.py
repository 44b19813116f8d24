"""Unit layout: a replica's numbers are the same bits whatever unit it is computed in.

The twin of a sweep cut into units is the same sweep cut differently: every
layout (one seed per unit, a few, units that split engine calls, the automatic
one) must give identical bits, variable by variable, for float32 and float64,
small and large batches, shared and per-replica streams, finite and online data.
"""

import math

import numpy as np
import pytest
import xarray as xr

from thermosgd.config import from_dict
from thermosgd.sweep import units
from thermosgd.sweep.run import plan_sweep, run_sweep
from thermosgd.sweep.units import call_seeds, compute_unit, engine_calls, plan_units
from thermosgd.twolayer import budget
from thermosgd.twolayer.engine import train

CASES = {
    "4 lr, float32": {
        "model": {"inputs": 5, "hidden": 6},
        "train": {"lr": [0.05, 0.1, 0.2, 0.4], "seeds": 13, "steps": 25, "record_every": 3, "probe_every": 9},
    },
    "|B| 1, 2, 5 (rank-1 and bmm updates)": {
        "model": {"inputs": 4, "hidden": 3},
        "train": {"lr": [0.1], "batch_size": [1, 2, 5], "seeds": 11, "steps": 25, "record_every": 1},
    },
    "per-replica streams, teacher, finite set, uniform, no bias, mse": {
        "model": {"inputs": 3, "hidden": 5, "bias": False},
        "data": {"inputs": "uniform", "labels": "teacher", "train_size": 40, "test_size": 10},
        "train": {
            "loss": "mse",
            "lr": [0.05, 0.2],
            "batch_size": [1, 3],
            "seeds": 9,
            "steps": 30,
            "record_every": 5,
            "share_data": False,
            "share_init": False,
        },
    },
    "float64": {
        "model": {"inputs": 5, "hidden": 6},
        "train": {"lr": [0.05, 0.1, 0.2], "seeds": 11, "steps": 30, "record_every": 3, "dtype": "float64"},
    },
}


def _layout(raw: dict, per_unit) -> xr.Dataset:
    cfg = from_dict({**raw, "sweep": {"seeds_per_unit": per_unit}})
    parts = [compute_unit(cfg.to_dict(), u.seeds) for u in plan_units(cfg)]
    return xr.concat(parts, dim="seed", data_vars="all", coords="different", compat="equals", join="exact")


def _assert_identical(a: xr.Dataset, b: xr.Dataset) -> None:
    assert list(a.seed.values) == list(b.seed.values)
    for name in a.data_vars:
        assert a[name].dtype == b[name].dtype, name
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("call", [None, 5])
def test_results_do_not_depend_on_the_unit_layout(case, call, monkeypatch):
    """``call = 5``: engine calls of 5 seeds, so units of 3 and 8 seeds start and end
    inside calls, and the last call is padded."""
    if call is not None:
        monkeypatch.setattr(units, "call_seeds", lambda cfg: min(call, len(cfg.train.seeds)))
    raw = CASES[case]
    reference = _layout(raw, "auto")
    for per_unit in (3, 8):
        _assert_identical(_layout(raw, per_unit), reference)


def test_sweep_equals_in_memory_train_when_the_batch_fills_whole_lanes(tmp_path):
    """With c·L·K and S·L·K multiples of 64 no element takes PyTorch's scalar tail path,
    so units of 8 seeds give exactly what ``train`` gives for all 32 seeds at once."""
    cfg = from_dict({**CASES["4 lr, float32"], "sweep": {"seeds_per_unit": 8}}).replace(train={"seeds": 32})
    assert call_seeds(cfg) * 4 % units.LANE == 0
    swept = run_sweep(cfg, tmp_path / "r", executor="inline", progress=False)
    _assert_identical(swept, train(cfg))


def test_engine_calls_fill_fixed_slots():
    cfg = from_dict({"train": {"seeds": [10, 11, 12, 13, 14, 15, 16], "steps": 5}})
    calls = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(units, "call_seeds", lambda cfg: 3)
        calls = engine_calls(cfg, (12, 13, 14, 15, 16))
    # Slots 0-2, 3-5, 6-8 of the config's seeds, past the last one unused seeds; kept: the unit's.
    assert calls == [([10, 11, 12], [2]), ([13, 14, 15], [0, 1, 2]), ([16, 0, 1], [0])]
    with pytest.raises(ValueError, match="not consecutive"):
        engine_calls(cfg, (10, 12))


@pytest.mark.parametrize(
    "seeds, steps, M, N, lrs",
    [
        (256, 20000, 10, 10, 4),
        (8, 3000, 10, 10, 4),
        (1000, 3000, 10, 10, 3),
        (256, 20000, 100, 100, 4),
        (5, 100, 3, 4, 1),
        (4096, 100000, 10, 10, 4),
    ],
)
def test_auto_units_are_whole_engine_calls_of_bounded_work(seeds, steps, M, N, lrs):
    cfg = from_dict(
        {
            "model": {"inputs": M, "hidden": N},
            "train": {"lr": [0.01 * (i + 1) for i in range(lrs)], "seeds": seeds, "steps": steps},
        }
    )
    g = budget.Grid.of(cfg)
    c = call_seeds(cfg)
    plan = plan_units(cfg)
    assert [s for u in plan for s in u.seeds] == list(cfg.train.seeds)
    assert 1 <= c <= max(1, budget.engine_block_seeds(g))
    assert all(len(u.seeds) % c == 0 for u in plan[:-1])
    per_call = budget.call_seconds(g, c)
    calls = math.ceil(seeds / c)
    for u in plan[:-1]:
        work = len(u.seeds) // c * per_call
        assert work <= max(units.UNIT_SECONDS[1], per_call) + 1e-9
        assert work >= min(units.UNIT_SECONDS[0], per_call * calls / len(plan)) - 1e-9
    assert len(plan) >= min(calls, units.MIN_UNITS) or len(plan[0].seeds) // c * per_call < units.UNIT_SECONDS[0] * 2


def test_auto_executor_uses_every_core_only_when_it_pays(monkeypatch):
    from thermosgd.sweep import plan as run

    monkeypatch.setattr(run, "usable_cores", lambda: 2)
    small = from_dict({"train": {"seeds": 8, "steps": 300}})
    assert plan_sweep(small, executor="auto").executor == "inline"
    big = from_dict(
        {
            "train": {
                "lr": [0.025, 0.05, 0.075, 0.1],
                "seeds": 256,
                "steps": 20000,
                "record_every": 40,
                "probe_every": 400,
            }
        }
    )
    plan = plan_sweep(big, executor="auto")
    assert (plan.executor, plan.workers, len(plan.units)) == ("processes", 2, 2)
    assert plan_sweep(big).executor == "inline"  # Python's default: no processes unless asked
    monkeypatch.setattr(run, "usable_cores", lambda: 1)
    assert plan_sweep(big, executor="auto").executor == "inline"


def test_cli_default_is_auto(tmp_path, capsys, monkeypatch):
    from thermosgd.cli import main
    from thermosgd.sweep import plan as run

    monkeypatch.setattr(run, "usable_cores", lambda: 2)
    cfg = tmp_path / "c.toml"
    cfg.write_text("[train]\nlr = [0.025, 0.05, 0.075, 0.1]\nseeds = 256\nsteps = 20000\nrecord_every = 40\n")
    assert main(["sweep", str(cfg), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "(processes, 2 workers;" in out
    assert main(["sweep", str(cfg), "--dry-run", "--executor", "inline"]) == 0
    assert "(inline;" in capsys.readouterr().out


def test_fused_step_is_layout_independent_too():
    """The compiled loop (``[train] fused``) keeps the property (per-replica loops: no tails)."""
    pytest.importorskip("numba")
    raw = {**CASES["4 lr, float32"], "train": {**CASES["4 lr, float32"]["train"], "fused": True}}
    reference = _layout(raw, "auto")
    for per_unit in (3, 8):
        _assert_identical(_layout(raw, per_unit), reference)
