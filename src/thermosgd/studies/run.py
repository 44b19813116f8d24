"""Run a study into a results folder with the sweep machinery: units, checksums, lock, executors.

The folder has a two-layer sweep's layout (``config.json``, ``units/unit-00000.nc``
with its ``.sha256``, ``results.nc``), written by :mod:`thermosgd.sweep`'s own
functions; ``config.json`` holds the study's configuration and the fingerprint of
its inputs (the factory's file, a data file or the tensors given). Re-running the
same command after any interruption computes only the missing or corrupt units;
the merged ``results.nc`` is identical array for array to an uninterrupted run
(:mod:`thermosgd.studies.engine`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from thermosgd.config import StudyConfig
from thermosgd.errors import UsageError
from thermosgd.progress import bar as progress_bar
from thermosgd.studies import engine
from thermosgd.studies.spec import Study, resolve
from thermosgd.sweep.executors import check_scheduler, open_executor, resolve_kind
from thermosgd.sweep.run import check_config, resumed_units, usable_cores
from thermosgd.sweep.store import CONFIG_FILE, check_output_folder, read_config, save_results
from thermosgd.sweep.units import Stamp, Unit, study_units, write_unit
from thermosgd.threads import threads_for


@dataclass(frozen=True)
class StudyPlan:
    """What a study will do, decided before anything is written.

    Attributes:
        units: blocks of seeds, each trained at every lr × batch size.
        executor: "inline", "processes" or "dask".
        seconds: estimated wall-clock time (measured on a short trial run here).
        memory: estimated peak memory of one unit, in bytes.
    """

    units: list[Unit]
    executor: str
    workers: int | None
    seconds: float
    memory: int

    def line(self, study: Study) -> str:
        t = study.cfg.train
        return (
            f"{len(t.lr)} lr × {len(t.batch_size)} batch size × {len(t.seeds)} seeds × {t.steps} steps in "
            f"{len(self.units)} units on {self.executor}; estimated {self.seconds:.0f} s, "
            f"{self.memory / 2**20:.0f} MiB per unit"
        )


def plan_units(study: Study) -> list[Unit]:
    return study_units(study.cfg.train.seeds, study.cfg.sweep.seeds_per_unit)


def estimate(study: Study, trial_steps: int = 20) -> tuple[float, int]:
    """Seconds for the whole study on one core and bytes per unit, from short trials of seed 0.

    Times a run of 0 steps (build, checks, one measurement) and one of ``trial_steps``
    steps at the first batch size, and extrapolates to every seed × batch size, step
    and recorded step (measurements cost about what the 0-step trial did).
    """
    t = study.cfg.train
    times = []
    for steps in (0, trial_steps):
        short = Study(_with_steps(study.cfg, steps), study.factory, study.data, study.fingerprint, study.portable)
        start = time.perf_counter()
        with threads_for(0):
            engine.train_seed(short, t.seeds[0], 0, [0])
        times.append(time.perf_counter() - start)
    per_step = max(times[1] - times[0], 0.0) / trial_steps
    per_run = t.steps * per_step + len(engine.record_steps(study)) * times[0]
    params = sum(
        p.numel() for p in engine.models.build(study.factory, t.seed, t.seeds[0], study.data.dtype).parameters()
    )
    grads = min(len(t.lr) * study.cfg.data.probe_size * params, engine.GRAD_ELEMENTS)
    memory = 4 * 8 * grads + 16 * len(t.lr) * params * max(1, t.gd_batch if t.noise != "sgd" else 1) // 64
    return per_run * len(t.seeds) * len(t.batch_size), int(memory)


def _with_steps(cfg: StudyConfig, steps: int) -> StudyConfig:
    return dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, steps=steps), record=dataclasses.replace(cfg.record, steps=(0,))
    )


def plan_study(study: Study, *, executor: str | None = "inline", workers: int | None = None, scheduler=None):
    """Units, where they run (``"auto"``: worker processes when the study is portable,
    has several units and takes long enough, else inline; on a GPU always inline) and what that costs."""
    kind = resolve_kind(executor, workers=workers, scheduler=scheduler)
    if kind not in ("inline", "auto") and not study.portable:
        raise UsageError(
            "a study given as Python objects runs in this process (executor inline); "
            "write it as a study TOML (factory module:function, data from [data]) to use workers"
        )
    gpu = study.cfg.train.device != "cpu"
    if gpu and kind == "processes":  # the trial run below starts CUDA here, which a forked worker cannot use
        raise UsageError(
            f"a study on {study.cfg.train.device} runs in this process (executor inline) or on Dask workers, "
            "not in local worker processes",
            param="executor",
        )
    units = plan_units(study)
    seconds, memory = estimate(study)
    if kind == "auto":
        parallel = min(usable_cores(), len(units))
        kind = "processes" if study.portable and parallel >= 2 and seconds >= 5.0 and not gpu else "inline"
        workers = parallel if kind == "processes" else None
    n = 1 if kind == "inline" else (workers or usable_cores())
    return StudyPlan(units, kind, workers, seconds / max(1, min(n, len(units))), memory)


def compute_portable_unit(stamp: dict[str, Any], seeds: tuple[int, ...]) -> xr.Dataset:
    """Train one unit of a TOML study from its stamp alone (what a worker process receives)."""
    from thermosgd.config import study_from_dict

    study = resolve(study_from_dict(stamp["study"]))
    if study.fingerprint != stamp["inputs_sha256"]:
        raise UsageError(
            "the study's inputs (factory file or data file) changed since the study started; "
            "choose a new output folder",
            param="out",
        )
    return engine.compute_unit(study, seeds)


def run_study(
    study: Study,
    out: str | os.PathLike,
    *,
    executor: str | None = "inline",
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
) -> xr.Dataset:
    """Run (or resume) ``study`` into ``out``; return the merged results (as :func:`thermosgd.load` would).

    Raises:
        UsageError: the folder holds something else or another study (or this study on
            another device), is locked, or the study's inputs cannot be fingerprinted and
            the folder has earlier units; ``[train] device`` is a GPU this machine lacks.
    """
    engine.device(study)  # a missing GPU fails before anything is written
    out = check_folder(study, out)
    stamped = Stamp(study.stamp())
    plan = plan_study(study, executor=executor, workers=workers, scheduler=scheduler)
    check_scheduler(scheduler)
    with resumed_units(out, stamped, study.stamp(), plan.units) as (lock_fd, have):
        todo = [u for u in plan.units if u.index not in have]
        compute: Callable = compute_portable_unit if plan.executor != "inline" else _inline(study)
        with (
            open_executor(plan.executor, workers=plan.workers, scheduler=scheduler, inherited=(lock_fd,)) as ex,
            progress_bar(len(plan.units), initial=len(have), desc="units", unit="unit", enabled=progress) as bar,
        ):
            futures = {ex.submit(compute, study.stamp(), u.seeds): u for u in todo}
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for fut in done:
                    unit = futures.pop(fut)
                    exc = fut.exception()
                    if exc is not None:
                        for other in futures:
                            other.cancel()
                        if isinstance(exc, UsageError):
                            raise exc
                        raise UsageError(f"{unit.describe()} failed: {type(exc).__name__}: {exc}") from exc
                    have[unit.index] = fut.result()
                    write_unit(have[unit.index], out, unit)
                    bar.update(1)
        merged = merge([have[u.index] for u in plan.units], study.cfg.train.seeds)
        save_results(merged, out, study.stamp())
    return merged


def check_folder(study: Study, out: str | os.PathLike) -> Path:
    """Refuse a folder that holds something else, another study, or that a study without a
    fingerprint would have to resume; touches nothing."""
    out = check_output_folder(out, "sweep")
    if study.fingerprint is None and (out / CONFIG_FILE).exists():
        raise UsageError(
            f"{out} holds an earlier run, and this study's inputs cannot be fingerprinted (a factory defined "
            "outside a file), so it cannot resume; choose a new output folder",
            param="out",
        )
    try:
        check_config(out, Stamp(study.stamp()))
    except UsageError as exc:
        _check_device(study, out)
        if "inputs_sha256" in str(exc).split("(", 1)[-1].split(":", 1)[0]:
            raise UsageError(
                f"{out} holds results of this study made with other inputs: the model factory's file or the "
                "data changed since; choose a new output folder",
                param="out",
            ) from None
        raise
    return out


def _check_device(study: Study, out: Path) -> None:
    """Refuse, naming the devices, a folder that holds this very study run on another device.

    Its units would mix results that differ in the last bits (docs/devices.md); a
    folder written on one device resumes on that device only.
    """
    old = read_config(out / CONFIG_FILE)
    new = json.loads(json.dumps(study.stamp()))
    train = old["study"].get("train") if isinstance(old.get("study"), dict) else None
    if not isinstance(train, dict):
        return  # not a study's folder: check_config's own message says what differs
    was = train.pop("device", "cpu")
    new["study"]["train"].pop("device", None)
    if old == new and was != study.cfg.train.device:
        raise UsageError(
            f"{out} holds this study run on device {was!r}; results on another device differ in the last bits, "
            f"so it resumes only with device {was!r}; choose a new output folder for {study.cfg.train.device!r}",
            param="out",
        )


def _inline(study: Study) -> Callable:
    return lambda stamp, seeds: engine.compute_unit(study, seeds)


def merge(parts: list[xr.Dataset], seeds) -> xr.Dataset:
    """Units concatenated along ``seed`` in the config's seed order."""
    merged = (
        parts[0]
        if len(parts) == 1
        else xr.concat(
            parts,
            dim="seed",
            data_vars="all",
            coords="minimal",
            compat="equals",
            join="exact",
            combine_attrs="override",
        )
    )
    merged = merged.sel(seed=np.array(seeds, dtype=merged["seed"].dtype))
    merged.attrs = dict(parts[0].attrs)
    if "diverged" in merged:
        merged["diverged"] = merged["diverged"].astype(bool)
    return merged


def study(
    spec,
    out: str | os.PathLike | None = None,
    *,
    model: Callable | None = None,
    data=None,
    test_data=None,
    device: str | None = None,
    **options,
) -> xr.Dataset:
    """Run a study: every lr × batch size × seed of any ``nn.Module``, instruments on a schedule.

    Args:
        spec: a study TOML path, or its dict (see docs/study.md for the keys).
        out: results folder (created; resumed when it holds this study's earlier run),
            or None to run in memory and write nothing.
        model: a factory ``model(seed=s) -> nn.Module``, replacing ``[model] factory``.
        data: the training set as ``(x, y)`` tensors or a ``torch.utils.data.Dataset``.
        test_data: a held-out set, likewise.
        device: "cpu", "cuda" or "cuda:N", replacing ``[train] device`` (docs/devices.md).
        **options: with ``out``, :func:`run_study`'s ``executor``, ``workers``, ``scheduler``
            (a TOML study only; as for sweeps) and ``progress``.

    Returns:
        Dataset with dims ``(lr, batch_size, seed, step)``: ``loss``, ``accuracy``,
        ``grad_var``, ``activation_rate``, ``weight_norm``, ``last_weight_norm`` (and
        ``test_*``, ``hessian_trace`` when asked), per-layer ``*_layer`` variables with a
        layer dimension, and ``diverged``.
    """
    resolved = resolve(spec, model=model, data=data, test_data=test_data, device=device)
    if out is None:
        if options:
            raise UsageError(f"study: {', '.join(options)} apply only with out=FOLDER")
        engine.device(resolved)
        units = plan_units(resolved)
        return merge([engine.compute_unit(resolved, u.seeds) for u in units], resolved.cfg.train.seeds)
    return run_study(resolved, out, **{"progress": False, **options})
