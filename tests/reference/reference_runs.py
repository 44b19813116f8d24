"""The small runs whose results must not change across refactors.

The float32 reference files (fig3, fig7, fig2-middle, walk) were written with
the layout before issue 9 on an AVX2 machine; ``fig3-float64.nc`` was added
with issue 25. These functions call today's layout with the same
configurations and seeds; ``compare.py`` states the tolerance.
"""

from __future__ import annotations

import shutil
from pathlib import Path

SEEDS, STEPS = 3, 120


def twolayer(name: str, dtype: str = "float32"):
    """A small fig3 / fig7 run (3 seeds × 120 steps, every η of the preset), in memory."""
    import thermosgd
    from thermosgd.presets import get, twolayer_config

    cfg = twolayer_config(get(name), seeds=SEEDS, steps=STEPS)
    if dtype != "float32":
        cfg = cfg.replace(train={"dtype": dtype})
    return thermosgd.train(cfg)


def walk_suite() -> dict:
    """The walk's quick suite, first two cases, seed 3, as strict JSON."""
    from thermosgd.jsonsafe import json_safe
    from thermosgd.reproduce.walk_suite import run_suite
    from thermosgd.walk.compare import CASES

    return json_safe(run_suite(quick=True, seed=3, cases=CASES[:2]))


def deep_fig2_middle(tmp: Path):
    """fig2-middle at its tiny test size, trained as a study (the deep presets' one path)."""
    import xarray as xr

    from thermosgd.reproduce.deep import reproduce_deep

    reproduce_deep("fig2-middle", tmp, quick=True, progress=False)
    ds = xr.load_dataset(Path(tmp) / "results.nc")
    shutil.rmtree(tmp, ignore_errors=True)
    return ds
