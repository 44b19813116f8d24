"""How far a sweep folder has got: units done, missing and corrupt, and whether its results check out."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from thermosgd.errors import UsageError
from thermosgd.sweep.lock import lock_holder
from thermosgd.sweep.store import CONFIG_FILE, RESULTS_FILE, read_config, results_problem
from thermosgd.sweep.units import CORRUPT, DONE, MISSING, Stamp, plan_units, read_unit, study_units, unit_state

__all__ = ["SweepStatus", "status"]


@dataclass(frozen=True)
class SweepStatus:
    """How far a sweep folder has got.

    Attributes:
        units: units in the plan; done + missing + corrupt == units.
        done: units whose file and checksum are in place.
        missing: units never written.
        corrupt: unit files that fail their checksum (or lack one): recomputed
            on the next run.
        replicas: replicas (lr × batch size × seed) in the done units.
        diverged: of those, replicas that diverged (recorded, then frozen).
        merged: ``results.nc`` exists.
        running: pid of the process writing to the folder now (0 if unknown),
            None when none is.
        results_problem: why ``results.nc`` fails its checksum or configuration
            check (None when it passes, is absent, or a sweep is writing it).
    """

    units: int
    done: int
    missing: int
    corrupt: int
    replicas: int
    diverged: int
    merged: bool
    running: int | None = None
    results_problem: str | None = None

    def line(self) -> str:
        if self.running is None and self.results_problem:
            state = (
                f"results.nc is NOT usable: {self.results_problem}; re-run the same command "
                "to rebuild it from the finished units"
            )
        elif self.running is None:
            state = f"results.nc {'written and verified' if self.merged else 'not yet written'}"
        else:
            state = f"a sweep is running on it{f' (pid {self.running})' if self.running else ''}"
        return (
            f"{self.done}/{self.units} units done, {self.missing} missing, {self.corrupt} corrupt; "
            f"{self.diverged} of {self.replicas} replicas in finished units diverged; {state}"
        )


def status(out: str | os.PathLike) -> SweepStatus:
    """How far a results folder has got (reads config.json and the unit files; writes nothing)."""
    from thermosgd.config import SweepConfig, from_dict

    if not isinstance(out, (str, os.PathLike)):
        raise UsageError(f"status: expected a results folder path, got {type(out).__name__}")
    out = Path(os.path.expanduser(os.fspath(out)))
    path = out / CONFIG_FILE
    if not path.exists():
        raise UsageError(f"{out} is not a sweep folder (no {CONFIG_FILE})")
    raw = read_config(path)
    cfg: SweepConfig | Stamp
    if isinstance(raw.get("study"), dict):  # a study folder (thermosgd.studies): units are blocks of its seeds
        try:
            study_train, study_sweep = raw["study"]["train"], raw["study"]["sweep"]
            units, cfg = study_units(study_train["seeds"], study_sweep["seeds_per_unit"]), Stamp(raw)
        except (KeyError, TypeError, ValueError):
            raise UsageError(f"{out} is not a sweep folder (its {CONFIG_FILE} is not a study's)") from None
    else:
        try:
            sweep_cfg = from_dict(raw)
        except UsageError as exc:
            raise UsageError(f"{out} is not a two-layer sweep folder ({str(exc).split('; choose')[0]})") from None
        units, cfg = plan_units(sweep_cfg), sweep_cfg
    states = []
    diverged = replicas = 0
    for u in units:
        state = unit_state(out, u)
        if state == DONE:
            ds = read_unit(out, u, cfg)
            if ds is None:  # checksum fine but not this config's unit
                state = CORRUPT
            else:
                diverged += int(ds["diverged"].values.sum())
                replicas += int(ds["diverged"].size)
        states.append(state)
    running = lock_holder(out)
    return SweepStatus(
        units=len(units),
        done=states.count(DONE),
        missing=states.count(MISSING),
        corrupt=states.count(CORRUPT),
        replicas=replicas,
        diverged=diverged,
        merged=(out / RESULTS_FILE).exists(),
        running=running,
        results_problem=None if running is not None else results_problem(out),
    )
