"""The small runs whose results must not change across refactors.

Each function tries today's module layout first; the reference files were
written with the layout before issue 9 (same configurations).
"""

from __future__ import annotations

import shutil
from pathlib import Path

SEEDS, STEPS = 3, 120


def twolayer(name: str):
    """A small fig3 / fig7 run (3 seeds × 120 steps, every η of the preset), in memory."""
    import thermosgd

    try:
        from thermosgd.presets import twolayer_config, get
        cfg = twolayer_config(get(name), seeds=SEEDS, steps=STEPS)
    except ImportError:  # pragma: no cover - layout-dependent
        raise
    return thermosgd.train(cfg)


def walk_suite() -> dict:
    """The walk's quick suite, first two cases, seed 3, as strict JSON."""
    from thermosgd.walk.compare import CASES, jsonable, run_suite

    return jsonable(run_suite(quick=True, seed=3, cases=CASES[:2]))


def deep_fig2_middle(tmp: Path):
    """fig2-middle at its tiny test size, trained one run after another."""
    import xarray as xr
    from thermosgd.deep.experiments import run_deep_preset

    try:  # the sequential loop is the reference (the ensemble equals it to tolerance only)
        out = run_deep_preset("fig2-middle", out=tmp, tiny=True, progress=False, ensemble=False)
    except TypeError:  # pragma: no cover - layout before the ensemble existed
        out = run_deep_preset("fig2-middle", out=tmp, tiny=True, progress=False)
    ds = xr.load_dataset(Path(out) / "results.nc")
    shutil.rmtree(tmp, ignore_errors=True)
    return ds
