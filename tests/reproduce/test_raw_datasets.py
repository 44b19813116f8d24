"""Every experiment writes its raw datasets, and its summary is recomputed from them alone.

Each experiment runs once at a small size into a folder; the summary recomputed
from the folder's ``.nc`` files must equal the summary in ``<name>.json``
exactly, and equal the summary of the same run kept in memory (NetCDF holds
float64 and the integer coordinates exactly, so the trip through disk changes no number).
"""

import json
import math

import pytest
import xarray as xr

from thermosgd.errors import UsageError
from thermosgd.jsonsafe import json_safe
from thermosgd.reproduce import experiments
from thermosgd.reproduce.experiments import RAW_DATASETS, summary_from_disk

SMALL = {
    "drift": (
        experiments.run_drift,
        "drift",
        {"steps": 40, "blocks": 2, "per_block": 4, "clones": 8, "record_every": 10},
    ),
    "equal-error": (experiments.run_equal_error, "equal_error", {"steps": 200, "seeds": 3, "record_every": 20}),
    "generalization": (experiments.run_generalization, "generalization", {"steps": 100, "seeds": 2, "test_size": 200}),
}


def _same(a, b) -> bool:
    """Equal JSON trees, NaN equal to NaN."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _summary_part(payload: dict) -> dict:
    drop = {"experiment", "settings", "files", "table", "diverged"}
    return {k: v for k, v in payload.items() if k not in drop}


@pytest.mark.parametrize("experiment", list(SMALL))
def test_summary_is_recomputed_from_the_raw_datasets(experiment, tmp_path):
    run, name, sizes = SMALL[experiment]
    payload = run(tmp_path, quick=True, **sizes)
    for stem in RAW_DATASETS[experiment]:
        path = tmp_path / f"{stem}.nc"
        assert str(path) in payload["files"]
        with xr.open_dataset(path, engine="scipy") as ds:
            assert json.loads(ds.attrs["settings"]) == json_safe(payload["settings"])
    stored = _summary_part(json.loads((tmp_path / f"{name}.json").read_text()))
    again = json.loads(json.dumps(json_safe(summary_from_disk(tmp_path, experiment))))
    assert _same(again, stored)
    in_memory = json.loads(json.dumps(json_safe(_summary_part(run(None, quick=True, **sizes)))))
    assert _same(in_memory, stored)


def test_unknown_experiment_and_missing_files_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="unknown experiment 'walk'"):
        summary_from_disk(tmp_path, "walk")
    with pytest.raises(UsageError, match="no results found"):
        summary_from_disk(tmp_path, "drift")
