"""``thermosgd reproduce``: run the paper's experiments and write their results and figures.

Data flows one way: preset → sweep (results on disk) → figures read from the
results. Plain ``thermosgd reproduce`` runs the default set (every figure that
needs no downloaded data) at a small size under ``runs/``.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from thermosgd import presets
from thermosgd.checks import torch_device
from thermosgd.errors import UsageError
from thermosgd.report import collect, summary_table, write_report
from thermosgd.report.provenance import WALL_TIME, environment
from thermosgd.reproduce import experiments
from thermosgd.reproduce.deep import reproduce_deep
from thermosgd.reproduce.mechanism import reproduce_mechanism
from thermosgd.reproduce.twolayer import reproduce_twolayer
from thermosgd.reproduce.walk import reproduce_walk
from thermosgd.sweep.run import folder_lock
from thermosgd.sweep.store import RUN_MARKER as MARKER
from thermosgd.sweep.store import check_output_folder, output_path


def reproduce(
    names: list[str] | None,
    *,
    out: Path | None = None,
    seeds: int | None = None,
    steps: int | None = None,
    data_dir: Path | None = None,
    substitute_digits: bool = False,
    quick: bool = False,
    include_diverged: bool = False,
    progress: bool = True,
    device: str = "cpu",
    fused: bool = False,
    **executor,
) -> dict[str, Path]:
    """Run presets; returns {preset name: its results folder}.

    Every fitted claim gets a verdict (printed, and in each folder's ``summary.json``
    and ``report.md``); a run ends with the table of all verdicts.
    ``include_diverged`` keeps replicas flagged as diverged in the fits.

    ``quick`` runs every preset at a seconds-long smoke-test size (two-layer: 2
    seeds × 100 steps unless given; deep: the tiny version; walk and analysis:
    their quick versions).

    With one name, ``out`` (default ``runs/NAME``) is that preset's folder. With
    several or none (the default set), each experiment gets ``out/NAME``
    (``out`` defaults to ``runs``).

    ``device`` ("cpu", "cuda" or "cuda:N") is where the two-layer, mechanism and
    deep presets train (README "Devices"); the walk and analysis presets run on the CPU.
    ``fused`` trains the two-layer presets through the compiled CPU loop (README
    "Fused CPU step"); the others ignore it.
    """
    torch_device(device, "device")  # a missing GPU fails before anything is written
    names = [names] if isinstance(names, str) else names  # reproduce("fig3"): one name, never its letters
    if seeds is not None:
        presets.check_count("seeds", seeds, presets.MAX_SEEDS)
    if steps is not None:
        presets.check_count("steps", steps, presets.MAX_STEPS)
    chosen = [presets.get(n) for n in names] if names else presets.default_set()
    # One run per experiment: fig3 also writes fig4's figure.
    runs: dict[str, presets.Preset] = {}
    for p in chosen:
        runs.setdefault(p.experiment, p)
    single = names is not None and len(names) == 1
    base = output_path(out) if out is not None else Path("runs")
    folders = {
        p.name: base if single and out is not None else (Path("runs") / p.name if single else base / p.name)
        for p in runs.values()
    }
    for p in runs.values():  # every folder is checked before anything runs; refusals touch nothing
        _check_writable(folders[p.name])
        check_output_folder(folders[p.name], "sweep" if p.kind == "twolayer" else "run")
    done = {}
    for p in runs.values():
        folder = folders[p.name]
        if progress:
            print(f"[{p.name}] {p.description}")
        start = time.perf_counter()
        if p.kind == "twolayer":  # run_sweep locks the folder and checks its config itself
            reproduce_twolayer(
                p,
                folder,
                seeds=seeds,
                steps=steps,
                quick=quick,
                include_diverged=include_diverged,
                progress=progress,
                device=device,
                fused=fused,
                **executor,
            )
        else:
            run = {
                "experiment": p.experiment,
                "seeds": seeds,
                "steps": steps,
                "quick": quick,
                "substitute_digits": substitute_digits,
                "include_diverged": include_diverged,
            }
            if device != "cpu":  # absent on the CPU, so folders written before the option still match
                run["device"] = device
            with folder_lock(folder):
                fresh = _claim_folder(folder, run)
                try:
                    _run_other(p, folder, run, data_dir=data_dir, progress=progress, executor=executor)
                except BaseException:
                    if fresh:  # e.g. missing data files: let the user retry with other options
                        (folder / MARKER).unlink(missing_ok=True)
                    raise
        _record_wall_time(folder, time.perf_counter() - start)
        if progress:
            print(f"[{p.name}] results and figures in {folder}")
        done[p.name] = folder
    # One page for everything under the runs folder (or for the one folder given with --out),
    # and its summary table as the run's closing table.
    pages = base if single and out is not None else (Path("runs") if single else base)
    report = collect(pages)
    page = write_report(pages, report)
    if progress:
        print("\n" + summary_table(report))
        print(f"\nreport: {page}")
    return done


def _record_wall_time(folder: Path, seconds: float) -> None:
    """The run's wall time and machine, for the report's provenance (the last run on this folder)."""
    machine = dict(environment())
    info = {
        "seconds": round(seconds, 3),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {k: machine[k] for k in ("thermosgd", "torch", "CPU", "GPU") if k in machine},
    }
    (folder / WALL_TIME).write_text(json.dumps(info) + "\n")


def _claim_folder(folder: Path, run: dict) -> bool:
    """Refuse a folder that holds another run; mark it as this run's.

    Two-layer sweeps are guarded by their config.json; the walk, deep and
    analysis presets write this marker instead, so that no preset silently
    overwrites the results of another run. Returns True if the folder was new.
    """
    marker = folder / MARKER
    if marker.exists():
        try:
            old = json.loads(marker.read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            old = None
        if not isinstance(old, dict):
            raise UsageError(
                f"{marker} is unreadable or damaged, so the run in {folder} cannot be identified; "
                "choose a new --out folder"
            )
        if old != run:
            diff = ", ".join(f"{k}: {old.get(k)!r} there, {v!r} now" for k, v in run.items() if old.get(k) != v)
            raise UsageError(f"{folder} holds results of another run ({diff}); choose a new --out folder")
        return False
    if any(f.name != ".lock" for f in folder.iterdir()):
        raise UsageError(f"{folder} already holds other files; choose a new --out folder")
    marker.write_text(json.dumps(run) + "\n")
    return True


def _run_other(p: presets.Preset, folder: Path, run: dict, *, data_dir, progress: bool, executor: dict) -> list:
    quick, seeds, steps = run["quick"], run["seeds"], run["steps"]
    if p.kind == "walk":
        if progress and (seeds or steps):
            print("[walk] --seeds/--steps do not apply to the walk suite (see `thermosgd walk`)")
        reproduce_walk(folder, quick=quick)
        return []
    elif p.kind == "deep":
        return reproduce_deep(
            p,
            folder,
            seeds=seeds,
            steps=steps,
            data_dir=data_dir,
            progress=progress,
            quick=quick,
            dataset="digits" if run["substitute_digits"] else None,
            include_diverged=run["include_diverged"],
            device=run.get("device", "cpu"),
        )
    elif p.kind == "analysis":
        runner = {
            "drift": experiments.run_drift,
            "equal-error": experiments.run_equal_error,
            "generalization": experiments.run_generalization,
        }[p.name]
        overrides = {} if steps is None else {"steps": steps}
        if seeds is not None and p.name != "drift":  # drift clones states instead of seeds
            overrides["seeds"] = seeds
        runner(folder, quick=quick, **overrides)
        return []
    elif p.kind == "mechanism":  # one resumable sweep per noise model under folder/runs/
        reproduce_mechanism(
            p,
            folder,
            seeds=seeds,
            steps=steps,
            quick=quick,
            include_diverged=run["include_diverged"],
            progress=progress,
            device=run.get("device", "cpu"),
            **executor,
        )
        return []
    raise AssertionError(f"no runner for preset kind {p.kind!r}")


def _check_writable(folder: Path) -> None:
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise UsageError(f"cannot write to output folder {folder}")
