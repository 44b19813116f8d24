"""``thermosgd reproduce``: run the paper's experiments and write their results and figures.

Data flows one way: preset → sweep (results on disk) → figures read from the
results. Plain ``thermosgd reproduce`` runs the default set (every figure that
needs no downloaded data) at a small size under ``runs/``; ``--quick`` runs go
under ``runs-quick/``, so a smoke test never meets a default run's folders.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from thermosgd import fmt, presets
from thermosgd.analysis.run_config import DATASET_NAME
from thermosgd.analysis.verdict import DEFAULT_MARGIN, check_margin
from thermosgd.checks import torch_device
from thermosgd.errors import UsageError
from thermosgd.report import collect, summary_table, write_report
from thermosgd.report.html import check_page
from thermosgd.report.provenance import WALL_TIME, environment
from thermosgd.reproduce import experiments
from thermosgd.reproduce.deep import image_data_missing, reproduce_deep
from thermosgd.reproduce.hessian_bound import run_hessian_bound
from thermosgd.reproduce.mechanism import reproduce_mechanism
from thermosgd.reproduce.twolayer import reproduce_twolayer
from thermosgd.reproduce.walk import reproduce_walk
from thermosgd.sweep.run import folder_lock
from thermosgd.sweep.store import RUN_MARKER as MARKER
from thermosgd.sweep.store import check_output_folder, output_path, read_meta, write_text


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
    fused: bool = True,
    margin: float = DEFAULT_MARGIN,
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
    (``out`` defaults to ``runs``). With ``quick``, ``runs-quick`` replaces ``runs``
    in these defaults.

    ``margin`` is the practical margin of every exponent's verdict, a fraction of
    the paper's value (:func:`~thermosgd.analysis.verdict.judge_exponent`); it is
    recorded in each ``summary.json`` and used for the page.

    ``device`` ("cpu", "cuda" or "cuda:N") is where the two-layer, mechanism and
    deep presets train (docs/devices.md); the walk and analysis presets run on the CPU.
    ``fused`` (default true) trains the two-layer presets through the compiled CPU
    kernels where they apply; false takes the torch reference path. The others ignore it.
    """
    torch_device(device, "device")  # a missing GPU fails before anything is written
    margin = check_margin(margin)
    names = [names] if isinstance(names, str) else names  # reproduce("fig3"): one name, never its letters
    if seeds is not None:
        presets.check_count("seeds", seeds, presets.MAX_SEEDS)
    if steps is not None:
        presets.check_count("steps", steps, presets.MAX_STEPS)
    runs, folders, pages = _plan(names, out, quick)
    for p in runs:  # every folder is checked before anything runs; refusals touch nothing
        _check_writable(folders[p.name])
        check_output_folder(folders[p.name], "sweep" if p.kind == "twolayer" else "run")
    check_page(pages)  # an index.html that is not ours is refused before anything runs
    options: dict = dict(
        seeds=seeds,
        steps=steps,
        quick=quick,
        include_diverged=include_diverged,
        progress=progress,
        device=device,
        margin=margin,
    )
    other = dict(substitute_digits=substitute_digits, data_dir=data_dir)
    done, seconds = {}, {}
    for p in runs:
        folder = folders[p.name]
        print(f"[{p.name}] {p.description}")
        start = time.perf_counter()
        if p.kind == "twolayer":  # run_sweep locks the folder and checks its config itself
            reproduce_twolayer(p, folder, fused=fused, **options, **executor)
        else:
            _run_locked(p, folder, options, other, executor)
        seconds[p.name] = time.perf_counter() - start
        _record_wall_time(folder, seconds[p.name])
        print(f"[{p.name}] results and figures in {folder}")
        done[p.name] = folder
    _finish(pages, margin, seconds)
    return done


def _finish(pages: Path, margin: float, seconds: dict[str, float]) -> None:
    """One page for everything under the runs folder (or the one folder given with --out); its summary
    table is the run's closing table, then the wall time of each section."""
    report = collect(pages, margin=margin)
    for line in report.warnings:
        print(f"warning: {line}")
    page = write_report(pages, report)
    print("\n" + summary_table(report))
    print("\n" + wall_times(seconds))
    print(f"\nreport: {page}")


def _plan(names: list[str] | None, out: Path | None, quick: bool):
    """``(presets to run, one per experiment; their folders by name; the folder of the page)``."""
    chosen = [presets.get(n) for n in names] if names else presets.default_set()
    runs: dict[str, presets.Preset] = {}
    for p in chosen:  # one run per experiment: fig3 also writes fig4's figure
        runs.setdefault(p.experiment, p)
    single = names is not None and len(names) == 1
    root = Path("runs-quick" if quick else "runs")
    base = output_path(out) if out is not None else root
    folders = {
        p.name: base if single and out is not None else (root / p.name if single else base / p.name)
        for p in runs.values()
    }
    pages = base if single and out is not None else (root if single else base)
    return list(runs.values()), folders, pages


def _run_locked(p: presets.Preset, folder: Path, options: dict, other: dict, executor: dict) -> None:
    """A walk, deep, analysis or mechanism preset, in its folder, locked and marked as this run's."""
    # Without the paper's image files in $THERMOSGD_DATA the image presets run on the digits substitute,
    # and say so; a --data-dir given without them is an error (a typo must not silently substitute).
    substitute = other["substitute_digits"] or (other["data_dir"] is None and image_data_missing(p, None))
    if substitute and not other["substitute_digits"]:
        paper = DATASET_NAME.get(p.params["dataset"], p.params["dataset"])
        print(f"[{p.name}] the paper's {paper} files are absent: running on digits (substitute: digits)")
    run = {
        "experiment": p.experiment,
        "seeds": options["seeds"],
        "steps": options["steps"],
        "quick": options["quick"],
        "substitute_digits": substitute,
        "include_diverged": options["include_diverged"],
    }
    if options["device"] != "cpu":  # absent on the CPU, so folders written before the option still match
        run["device"] = options["device"]
    with folder_lock(folder):
        fresh = _claim_folder(folder, run)
        try:
            _run_other(
                p,
                folder,
                run,
                data_dir=other["data_dir"],
                progress=options["progress"],
                margin=options["margin"],
                executor=executor,
            )
        except BaseException:
            if fresh:  # e.g. missing data files: let the user retry with other options
                (folder / MARKER).unlink(missing_ok=True)
            raise


def wall_times(seconds: dict[str, float]) -> str:
    """The wall time of each section of this command, and the total, one line each."""
    width = max([len(n) for n in seconds] + [len("total")])
    lines = [f"{n:<{width}}  {fmt.fixed(s, 1)} s" for n, s in seconds.items()]
    return "\n".join(["wall time per section:", *lines, f"{'total':<{width}}  {fmt.fixed(sum(seconds.values()), 1)} s"])


def _record_wall_time(folder: Path, seconds: float) -> None:
    """The run's wall time and machine, for the report's provenance (the last run on this folder)."""
    machine = dict(environment())
    info = {
        "seconds": round(seconds, 3),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {k: machine[k] for k in ("thermosgd", "torch", "CPU", "GPU") if k in machine},
    }
    write_text(folder / WALL_TIME, json.dumps(info) + "\n")


def _claim_folder(folder: Path, run: dict) -> bool:
    """Refuse a folder that holds another run; mark it as this run's.

    Two-layer sweeps are guarded by their config.json; the walk, deep and
    analysis presets write this marker instead, so that no preset silently
    overwrites the results of another run. Returns True if the folder was new.
    """
    marker = folder / MARKER
    if marker.exists():
        try:
            old = json.loads(read_meta(marker))
        except (OSError, UsageError, ValueError, RecursionError):
            old = None
        if not isinstance(old, dict):
            raise UsageError(
                f"{marker} is unreadable or damaged, so the run in {folder} cannot be identified; "
                "choose a new output folder",
                param="out",
            )
        if old != run:
            diff = ", ".join(f"{k}: {old.get(k)!r} there, {v!r} now" for k, v in run.items() if old.get(k) != v)
            raise UsageError(f"{folder} holds results of another run ({diff}); choose a new output folder", param="out")
        return False
    if any(f.name != ".lock" for f in folder.iterdir()):
        raise UsageError(f"{folder} already holds other files; choose a new output folder", param="out")
    write_text(marker, json.dumps(run) + "\n")
    return True


def _run_other(
    p: presets.Preset, folder: Path, run: dict, *, data_dir, progress: bool, margin: float, executor: dict
) -> list:
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
            margin=margin,
        )
    elif p.kind == "analysis":
        runner = {
            "drift": experiments.run_drift,
            "equal-error": experiments.run_equal_error,
            "generalization": experiments.run_generalization,
            "hessian-bound": run_hessian_bound,
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
            margin=margin,
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
