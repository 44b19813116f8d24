"""Recording instruments during training into the project's results format.

A :class:`Recorder` pairs instruments (callables ``model -> result``) with a schedule
(``step -> bool``). Call it once per step from your loop; it runs the instruments only
when the schedule says so. :meth:`Recorder.to_dataset` turns one run into an
``xarray.Dataset`` with dims ``(lr, batch_size, seed, step)`` (size 1 except ``step``);
:func:`combine_runs` merges runs into one sweep, ready for
``thermosgd.sweep.store.save_dataset``.

An instrument's result becomes data variables by its type:

* a number or 0-d tensor -> variable ``name``;
* a mapping ``{layer: number}`` -> variable ``name_layer`` with extra dim ``layer_name``;
* an object with ``to_record(name) -> dict`` (the results of this package) -> the
  variables it lists (e.g. ``grad_var`` and ``grad_var_layer``).
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from thermosgd.errors import UsageError

Instrument = Callable[[nn.Module], Any]
Schedule = Callable[[int], bool]
RUN_DIMS = ("lr", "batch_size", "seed")


#: Names the results format uses itself: an instrument's variable may not take one.
RESERVED = ("diverged", "lr", "batch_size", "seed", "step")


def _number(value: Any) -> float | None:
    """``value`` as a float if it is one number (a 1-element tensor or array counts), else None."""
    if isinstance(value, torch.Tensor):
        return float(value.reshape(-1)[0]) if value.numel() == 1 and not value.is_complex() else None
    if isinstance(value, np.ndarray):
        return float(value.reshape(-1)[0]) if value.size == 1 and np.isrealobj(value) else None
    if isinstance(value, numbers.Real):
        return float(value)
    return None


def _scalar(name: str, result: Any) -> float:
    value = _number(result)
    if value is None:
        shape = f" of shape {tuple(result.shape)}" if hasattr(result, "shape") else ""
        raise UsageError(
            f"Recorder: instrument '{name}' returned {type(result).__name__}{shape}; expected one number, "
            "a {layer: number} mapping, or an object with to_record(name)"
        )
    return value


def _fields(name: str, result: Any) -> dict[str, float | dict[str, float]]:
    if hasattr(result, "to_record"):
        fields = result.to_record(name)
        if not isinstance(fields, Mapping):
            raise UsageError(f"Recorder: instrument '{name}': to_record returned {type(fields).__name__}, not a dict")
        return {str(k): _layers(name, v) if isinstance(v, Mapping) else _scalar(name, v) for k, v in fields.items()}
    if isinstance(result, Mapping):
        return {f"{name}_layer": _layers(name, result)}
    return {name: _scalar(name, result)}


def _layers(name: str, result: Mapping) -> dict[str, float]:
    out = {}
    for k, v in result.items():
        value = _number(v)
        if value is None:
            raise UsageError(f"Recorder: instrument '{name}' gave layer {k!r} a {type(v).__name__}, not a number")
        out[str(k)] = value
    return out


def layer_dim(variable: str) -> str:
    """Name of the extra dim of a per-layer variable: ``'grad_var_layer' -> 'layer_grad_var'``."""
    return "layer_" + variable.removesuffix("_layer")


class Recorder:
    """Runs instruments at the steps a schedule selects and keeps the results by step.

    Args:
        instruments: variable name -> ``fn(model) -> result`` (bind data with a closure,
            e.g. ``lambda m: gradient_variance(m, loss_fn, x_probe, y_probe)``).
        schedule: ``step -> bool``, e.g. :func:`~thermosgd.instruments.log_spaced`.

    Example:
        >>> rec = Recorder({"w": weight_norms}, every(10))
        >>> for step in range(steps + 1):
        ...     rec(step, model)          # records when the schedule fires
        ...     if step < steps: sgd_update()
        >>> ds = rec.to_dataset(lr=0.1, batch_size=32, seed=0)
    """

    def __init__(self, instruments: Mapping[str, Instrument], schedule: Schedule):
        if not isinstance(instruments, Mapping) or not instruments:
            raise UsageError("Recorder: give the instruments as a non-empty {name: fn(model)} mapping")
        for name, fn in instruments.items():
            if not isinstance(name, str) or not name or not callable(fn):
                raise UsageError(f"Recorder: instrument {name!r} must be a non-empty name with a callable fn(model)")
        if not callable(schedule):
            raise UsageError(
                "Recorder: the schedule must be a callable step -> bool such as every(k), "
                f"got {type(schedule).__name__}"
            )
        self.instruments = dict(instruments)
        self.schedule = schedule
        self.records: dict[int, dict[str, float | dict[str, float]]] = {}
        self._kinds: dict[str, tuple[str, bool]] = {}  # variable -> (instrument, per layer)
        self._made: dict[str, frozenset[str]] = {}  # instrument -> the variables it writes

    def __call__(self, step: int, model: nn.Module) -> bool:
        """Record at ``step`` if the schedule fires; return whether it did."""
        step = _step(step)
        if not self.schedule(step):
            return False
        self.record(step, {name: fn(model) for name, fn in self.instruments.items()})
        return True

    def record(self, step: int, results: Mapping[str, Any]) -> None:
        """Store results computed elsewhere (e.g. for a whole ensemble at once) at ``step``:
        instrument name -> result, in the forms listed in the module docstring."""
        step = _step(step)
        row: dict[str, float | dict[str, float]] = {}
        for name, result in results.items():
            fields = _fields(str(name), result)
            for var, value in fields.items():
                self._claim(var, str(name), isinstance(value, Mapping))
                row[var] = value
            made = self._made.setdefault(str(name), frozenset(fields))
            if made != frozenset(fields):
                raise UsageError(
                    f"Recorder: instrument '{name}' gave {sorted(fields)} at step {step} but {sorted(made)} "
                    "before; an instrument must return the same kind of result (per layer at some steps, not others)"
                )
        self.records[step] = row

    def _claim(self, var: str, instrument: str, per_layer: bool) -> None:
        """One variable, one instrument, one kind: a clash would overwrite data silently."""
        if var in RESERVED or var.startswith("layer_"):
            raise UsageError(
                f"Recorder: instrument '{instrument}' would write variable '{var}', a name the results format "
                f"uses itself ({', '.join(RESERVED)}, layer_*); rename the instrument"
            )
        owner, was_layered = self._kinds.setdefault(var, (instrument, per_layer))
        if owner != instrument:
            raise UsageError(
                f"Recorder: instruments '{owner}' and '{instrument}' both write variable '{var}'; rename one"
            )
        if was_layered != per_layer:
            raise UsageError(f"Recorder: instrument '{instrument}' gave '{var}' per layer at some steps, not others")

    def to_dataset(
        self,
        *,
        lr: float,
        batch_size: int,
        seed: int,
        steps: Sequence[int] | None = None,
        diverged: bool = False,
    ) -> xr.Dataset:
        """One run as a Dataset with dims ``(lr, batch_size, seed, step[, layer_*])``.

        Args:
            lr, batch_size, seed: this run's coordinates.
            steps: the steps to lay out (default: those recorded); steps never recorded,
                e.g. after divergence, hold NaN.
            diverged: stored as the bool variable ``diverged`` with dims (lr, batch_size, seed).
        """
        lr, batch_size = _coordinate("lr", lr, float), _coordinate("batch_size", batch_size, int)
        seed = _coordinate("seed", seed, int)
        steps = sorted(self.records) if steps is None else sorted(_step(s) for s in steps)
        names: dict[str, list[str] | None] = {}
        for row in self.records.values():
            for var, value in row.items():
                if isinstance(value, Mapping):
                    known = names.setdefault(var, []) or []
                    known.extend(k for k in value if k not in known)
                    names[var] = known
                else:
                    names.setdefault(var, None)
        coords: dict[str, Any] = {
            "lr": [float(lr)],
            "batch_size": [int(batch_size)],
            "seed": [int(seed)],
            "step": np.asarray(steps, dtype=np.int64),
        }
        data_vars: dict[str, Any] = {}
        for var, layers in names.items():
            if layers is None:
                arr = np.full((len(steps),), np.nan)
                for i, s in enumerate(steps):
                    arr[i] = self.records.get(s, {}).get(var, math.nan)
                data_vars[var] = (("lr", "batch_size", "seed", "step"), arr.reshape(1, 1, 1, -1))
            else:
                arr = np.full((len(steps), len(layers)), np.nan)
                for i, s in enumerate(steps):
                    value = self.records.get(s, {}).get(var, {})
                    for j, layer in enumerate(layers):
                        arr[i, j] = value.get(layer, math.nan) if isinstance(value, Mapping) else math.nan
                dim = layer_dim(var)
                coords[dim] = np.asarray(layers, dtype=str)
                data_vars[var] = (("lr", "batch_size", "seed", "step", dim), arr.reshape(1, 1, 1, *arr.shape))
        data_vars["diverged"] = (RUN_DIMS, np.full((1, 1, 1), bool(diverged)))
        return xr.Dataset(data_vars, coords=coords)


def _step(step: Any) -> int:
    """A step is a whole number >= 0: 1.2 and 1.7 would otherwise both be stored as step 1."""
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)) or step < 0:
        raise UsageError(f"Recorder: a step must be an integer >= 0, got {step!r}")
    return int(step)


def _coordinate(name: str, value: Any, kind: type):
    """A run coordinate as ``kind``; strings, NaN, bools and fractional integers are refused."""
    ok = not isinstance(value, (bool, np.bool_)) and isinstance(value, numbers.Real)
    if ok and kind is int:
        ok = float(value).is_integer()
    if ok and kind is float:
        ok = math.isfinite(float(value))
    if not ok:
        raise UsageError(
            f"Recorder.to_dataset: {name} must be a finite {'integer' if kind is int else 'number'}, got {value!r}"
        )
    return kind(value)


def combine_runs(
    runs: Sequence[xr.Dataset], *, config: Mapping[str, Any] | None = None, kind: str = "deep"
) -> xr.Dataset:
    """Merge single-run datasets (from :meth:`Recorder.to_dataset`) into one sweep.

    Missing combinations and steps are NaN; a run absent from ``runs`` counts as not
    diverged. ``attrs["config"]`` is the JSON of ``config`` and ``attrs["kind"] = kind``.
    """
    if isinstance(runs, (str, xr.Dataset)) or not runs:
        raise UsageError("combine_runs: give a non-empty list of datasets from Recorder.to_dataset")
    for r in runs:
        if not isinstance(r, xr.Dataset) or "diverged" not in r:
            raise UsageError(f"combine_runs: expected datasets from Recorder.to_dataset, got {type(r).__name__}")
    try:
        ds = xr.merge(
            [r.assign(diverged=r["diverged"].astype(np.float64)) for r in runs],
            join="outer",
            compat="no_conflicts",
            combine_attrs="drop",
        )
    except (xr.MergeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"combine_runs: two runs disagree on the same run and step ({first})") from None
    ds["diverged"] = ds["diverged"].fillna(0).astype(bool)
    ds = ds.transpose(*RUN_DIMS, "step", ...)
    ds.attrs["kind"] = kind
    ds.attrs["config"] = json.dumps(dict(config or {}), sort_keys=True)
    return ds
