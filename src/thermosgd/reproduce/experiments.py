"""The prediction-vs-measurement experiments: drift, equal error, generalization.

Each runs one experiment at the size of its entry in :mod:`thermosgd.presets`
(``quick`` for seconds), and, given a folder, writes its raw datasets there
(``drift_one.nc`` and ``drift_trajectories.nc``, ``equal_error.nc``,
``generalization.nc``, each with its settings in ``attrs["settings"]``), reads
them back, and computes the summary, table and figure from what it read:
``<name>.png``, ``<name>.pdf``, ``<name>.md`` and ``<name>.json``. So every
verdict can be recomputed from disk (:func:`summary_from_disk`).
``thermosgd drift | equal-error | generalization`` and ``thermosgd reproduce``
call these functions.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import xarray as xr

from thermosgd import presets
from thermosgd.analysis.drift import drift_summary, drift_table
from thermosgd.analysis.equal_error import at_first_crossing, equal_error_summary, equal_error_table
from thermosgd.analysis.generalization import final_values, generalization_summary, generalization_table
from thermosgd.errors import UsageError
from thermosgd.figures.comparisons import equal_error_figure, generalization_figure
from thermosgd.figures.drift import drift_figure
from thermosgd.figures.save import save_figure
from thermosgd.jsonsafe import json_safe
from thermosgd.sweep.store import load, safe_folder, save_dataset, write_text
from thermosgd.twolayer.drift import DriftSetup, drift_runs
from thermosgd.twolayer.engine import train

__all__ = ["RAW_DATASETS", "run_drift", "run_equal_error", "run_generalization", "summary_from_disk"]

#: Experiment -> the stems of the raw datasets it writes (``<stem>.nc``), in the order its summary takes them.
RAW_DATASETS = {
    "drift": ("drift_one", "drift_trajectories"),
    "equal-error": ("equal_error",),
    "generalization": ("generalization",),
}


def _write(out: Path | None, name: str, fig, table: str, payload: dict) -> list[str]:
    if out is None:
        return []
    out = safe_folder(Path(out))
    files = [str(p) for p in save_figure(fig, out / name)]
    write_text(out / f"{name}.md", table)
    write_text(out / f"{name}.json", json.dumps(json_safe(payload), indent=2) + "\n")
    raw = [str(out / f"{stem}.nc") for stem in RAW_DATASETS[payload["experiment"]]]
    return raw + files + [str(out / f"{name}.md"), str(out / f"{name}.json")]


def _through_disk(out: Path | None, experiment: str, datasets: tuple[xr.Dataset, ...], settings: dict):
    """Write the raw datasets into ``out`` and return them as read back (unchanged when ``out`` is None)."""
    if out is None:
        return datasets
    read = []
    for stem, ds in zip(RAW_DATASETS[experiment], datasets):
        ds = ds.copy()
        ds.attrs["settings"] = json.dumps(json_safe(settings), sort_keys=True)
        read.append(load(save_dataset(ds, Path(out) / f"{stem}.nc")))
    return tuple(read)


def _summaries(experiment: str, datasets: tuple[xr.Dataset, ...], s: dict):
    """The analysis of one experiment's raw datasets: ``(summary as a dict, what its figure draws)``."""
    if experiment == "drift":
        one, traj = datasets
        drift = drift_summary(one, traj, seed=s["seed"])
        return drift.to_dict(), drift
    (ds,) = datasets
    if experiment == "equal-error":
        res = at_first_crossing(ds, s["target"])
        return equal_error_summary(res), res
    return generalization_summary(final_values(ds)), None


def summary_from_disk(folder: str | Path, experiment: str) -> dict:
    """Recompute an experiment's summary from the raw datasets in its folder.

    Args:
        folder: where :func:`run_drift`, :func:`run_equal_error` or :func:`run_generalization` wrote.
        experiment: ``"drift"``, ``"equal-error"`` or ``"generalization"``.

    Returns:
        The summary, the same numbers as in ``<name>.json``.

    Raises:
        UsageError: an unknown experiment, or its datasets are missing or unreadable.
    """
    if experiment not in RAW_DATASETS:
        raise UsageError(f"unknown experiment {experiment!r}; known: {', '.join(RAW_DATASETS)}")
    datasets = tuple(load(Path(folder) / f"{stem}.nc") for stem in RAW_DATASETS[experiment])
    settings = json.loads(datasets[0].attrs["settings"])
    return _summaries(experiment, datasets, settings)[0]


def _settings(name: str, quick: bool, overrides: dict) -> dict:
    """The preset's settings at its default or quick size, with the caller's overrides."""
    preset = presets.get(name)
    s = preset.settings(quick=quick)
    seeds, steps = preset.size(quick=quick)
    s["steps"] = steps
    if seeds is not None:
        s["seeds"] = seeds
    s.update({k: v for k, v in overrides.items() if v is not None})
    return s


def _positive_int(name: str, value: int, minimum: int = 1) -> None:
    if value < minimum:
        raise UsageError(f"{name} must be >= {minimum}, got {value}", param=name)


def _positive_floats(name: str, values) -> None:
    if any(not (v > 0) or not math.isfinite(v) for v in values):
        raise UsageError(f"{name} must be positive and finite, got {list(values)}", param=name)
    if len(set(values)) != len(values):
        raise UsageError(f"{name} has repeated values: {list(values)}", param=name)


def _diverged(ds) -> str | None:
    """Name the replicas that diverged: refuse if every seed of some (η, |B|) did, else a note.

    A diverged replica is frozen and left out of every mean; a cell whose seeds all
    diverged would otherwise show up as a row of NaN.
    """
    div = ds["diverged"].transpose("lr", "batch_size", "seed").values
    n = div.shape[-1]
    cells = [
        (float(lr), int(bs), int(div[i, j].sum()))
        for i, lr in enumerate(ds["lr"].values)
        for j, bs in enumerate(ds["batch_size"].values)
        if div[i, j].any()
    ]
    if not cells:
        return None
    which = "; ".join(f"η = {lr:g}, |B| = {bs}: {k} of {n} seeds" for lr, bs, k in cells)
    if any(k == n for _, _, k in cells):
        raise UsageError(
            f"SGD diverged for every seed of some (η, |B|) ({which}); use smaller learning rates", param="lrs"
        )
    return f"{int(div.sum())} of {div.size} replicas diverged and are left out ({which})"


def _with_note(table: str, note: str | None) -> str:
    return table if note is None else f"> {note}\n\n{table}"


# --------------------------------------------------------------------------
# Experiments
# --------------------------------------------------------------------------


def run_drift(out=None, *, quick: bool = False, **overrides) -> dict:
    """Part 4: measured noise-induced drift of b and V² beside the paper's prediction.

    Args:
        out: folder for ``drift.{png,pdf,md,json}`` and the raw ``drift_one.nc``,
            ``drift_trajectories.nc`` (None: write nothing).
        quick: a seconds-long run (for tests and smoke checks).
        overrides: any of ``lrs, batch_sizes, steps, blocks, per_block, clones,
            record_every, labels, seed``.

    Returns:
        The JSON payload (summary, settings, table, files).
    """
    s = _settings("drift", quick, overrides)
    _positive_floats("lrs", s["lrs"])
    if any(int(b) < 1 for b in s["batch_sizes"]) or len(set(s["batch_sizes"])) != len(s["batch_sizes"]):
        raise UsageError(
            f"batch_sizes must be distinct integers >= 1, got {list(s['batch_sizes'])}", param="batch_sizes"
        )
    _positive_int("steps", s["steps"], 4)
    _positive_int("blocks", s["blocks"], 2)
    _positive_int("per_block", s["per_block"], 1)
    _positive_int("clones", s["clones"], 2)
    _positive_int("record_every", s["record_every"])
    if s["record_every"] > s["steps"] // 4:
        raise UsageError(
            f"record_every ({s['record_every']}) must be at most steps/4 ({s['steps'] // 4})", param="record_every"
        )
    setup = DriftSetup(labels=s["labels"], seed=s["seed"])
    one, traj = drift_runs(
        setup,
        s["lrs"],
        s["batch_sizes"],
        steps=s["steps"],
        blocks=s["blocks"],
        per_block=s["per_block"],
        clones=s["clones"],
        record_every=s["record_every"],
        seed=s["seed"],
    )
    one, traj = _through_disk(out, "drift", (one, traj), s)
    summary, drift = _summaries("drift", (one, traj), s)
    table = drift_table(drift)
    payload = {"experiment": "drift", "settings": s, **summary}
    fig = None
    if out is not None:
        fig = drift_figure(
            traj,
            summary,
            title=(
                f"drift of b and V² beyond the mean gradient: {s['labels']} labels, "
                f"{s['blocks']}×{s['per_block']} replicas per (η, |B|), shared init"
            ),
        )
    payload["files"] = _write(out, "drift", fig, table, payload)
    payload["table"] = table
    return payload


def run_equal_error(out=None, *, quick: bool = False, **overrides) -> dict:
    """Part 5: σ and ‖V‖ when each η first reaches the same training error (same init).

    Args:
        out: folder for ``equal_error.{png,pdf,md,json}`` and the raw ``equal_error.nc`` (None: write nothing).
        quick: a seconds-long run.
        overrides: any of ``lrs, batch_size, seeds, steps, record_every, target, train_size, seed``.

    Returns:
        The JSON payload.
    """
    s = _settings("equal-error", quick, overrides)
    _positive_floats("lrs", s["lrs"])
    if len(s["lrs"]) < 2:
        raise UsageError("lrs needs at least two learning rates to compare", param="lrs")
    _positive_int("seeds", s["seeds"], 2)
    _positive_int("steps", s["steps"])
    _positive_int("record_every", s["record_every"])
    if s["record_every"] > s["steps"] // 4:
        raise UsageError(
            f"record_every ({s['record_every']}) must be at most steps/4 ({s['steps'] // 4}): checked fewer "
            "times, the learning rates would be compared at (nearly) equal time, not at equal error",
            param="record_every",
        )
    _positive_int("batch_size", s["batch_size"])
    _positive_int("train_size", s["train_size"], 2)
    if not 0 < s["target"] < 1:
        raise UsageError(f"target must be a training error in (0, 1), got {s['target']}", param="target")
    cfg = presets.teacher_task_config(
        lrs=s["lrs"],
        batch_size=s["batch_size"],
        seeds=s["seeds"],
        steps=s["steps"],
        record_every=s["record_every"],
        train_size=s["train_size"],
        seed=s["seed"],
    )
    (ds,) = _through_disk(out, "equal-error", (train(cfg),), s)
    note = _diverged(ds)
    summary, res = _summaries("equal-error", (ds,), s)
    table = _with_note(equal_error_table(summary), note)
    payload = {"experiment": "equal-error", "settings": s, "diverged": note, **summary}
    fig = None
    if out is not None:
        fig = equal_error_figure(res)
    payload["files"] = _write(out, "equal_error", fig, table, payload)
    payload["table"] = table
    return payload


def run_generalization(out=None, *, quick: bool = False, **overrides) -> dict:
    """Part 6: final test accuracy vs activation rate and ‖V‖ over an (η, |B|) grid.

    Args:
        out: folder for ``generalization.{png,pdf,md,json}`` and the raw ``generalization.nc``
            (None: write nothing).
        quick: a seconds-long run.
        overrides: any of ``lrs, batch_sizes, seeds, steps, train_size, test_size, seed``.

    Returns:
        The JSON payload.
    """
    s = _settings("generalization", quick, overrides)
    _positive_floats("lrs", s["lrs"])
    if any(int(b) < 1 for b in s["batch_sizes"]) or len(set(s["batch_sizes"])) != len(s["batch_sizes"]):
        raise UsageError(
            f"batch_sizes must be distinct integers >= 1, got {list(s['batch_sizes'])}", param="batch_sizes"
        )
    if len(s["lrs"]) * len(s["batch_sizes"]) < 3:
        raise UsageError("the (η, |B|) grid needs at least 3 cells for rank correlations", param="lrs")
    _positive_int("seeds", s["seeds"], 2)
    _positive_int("steps", s["steps"])
    _positive_int("train_size", s["train_size"], 2)
    _positive_int("test_size", s["test_size"], 10)
    cfg = presets.teacher_task_config(
        lrs=s["lrs"],
        batch_size=list(s["batch_sizes"]),
        seeds=s["seeds"],
        steps=s["steps"],
        record_every=s["steps"],
        train_size=s["train_size"],
        test_size=s["test_size"],
        seed=s["seed"],
    )
    (ds,) = _through_disk(out, "generalization", (train(cfg),), s)
    note = _diverged(ds)
    summary = _summaries("generalization", (ds,), s)[0]
    table = _with_note(generalization_table(summary), note)
    payload = {"experiment": "generalization", "settings": s, "diverged": note, **summary}
    fig = None
    if out is not None:
        fig = generalization_figure(
            summary, title=f"teacher task, {s['train_size']} training samples, {s['seeds']} seeds per cell"
        )
    payload["files"] = _write(out, "generalization", fig, table, payload)
    payload["table"] = table
    return payload
