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


def _fields(name: str, result: Any) -> dict[str, float | dict[str, float]]:
    if hasattr(result, "to_record"):
        return result.to_record(name)
    if isinstance(result, Mapping):
        return {f"{name}_layer": {str(k): float(v) for k, v in result.items()}}
    if isinstance(result, torch.Tensor) and result.numel() == 1:
        return {name: float(result)}
    if isinstance(result, (int, float, np.number)):
        return {name: float(result)}
    raise UsageError(
        f"Recorder: instrument '{name}' returned {type(result).__name__}; expected a number, "
        "a {layer: number} mapping, or an object with to_record(name)"
    )


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
        if not instruments:
            raise UsageError("Recorder: give at least one instrument")
        self.instruments = dict(instruments)
        self.schedule = schedule
        self.records: dict[int, dict[str, float | dict[str, float]]] = {}

    def __call__(self, step: int, model: nn.Module) -> bool:
        """Record at ``step`` if the schedule fires; return whether it did."""
        if not self.schedule(step):
            return False
        self.record(step, {name: fn(model) for name, fn in self.instruments.items()})
        return True

    def record(self, step: int, results: Mapping[str, Any]) -> None:
        """Store results computed elsewhere (e.g. for a whole ensemble at once) at ``step``:
        instrument name -> result, in the forms listed in the module docstring."""
        row: dict[str, float | dict[str, float]] = {}
        for name, result in results.items():
            row.update(_fields(name, result))
        self.records[step] = row

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
        steps = sorted(self.records) if steps is None else sorted(steps)
        names: dict[str, list[str] | None] = {}
        for row in self.records.values():
            for var, value in row.items():
                if isinstance(value, Mapping):
                    known = names.setdefault(var, [])
                    known.extend(k for k in value if k not in known)
                else:
                    names.setdefault(var, None)
        coords = {
            "lr": [float(lr)],
            "batch_size": [int(batch_size)],
            "seed": [int(seed)],
            "step": np.asarray(steps, dtype=np.int64),
        }
        data_vars = {}
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
                        arr[i, j] = value.get(layer, math.nan)
                dim = layer_dim(var)
                coords[dim] = np.asarray(layers, dtype=str)
                data_vars[var] = (("lr", "batch_size", "seed", "step", dim), arr.reshape(1, 1, 1, *arr.shape))
        data_vars["diverged"] = (RUN_DIMS, np.full((1, 1, 1), bool(diverged)))
        return xr.Dataset(data_vars, coords=coords)


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
    if not runs:
        raise UsageError("combine_runs: no runs to combine")
    ds = xr.merge(
        [r.assign(diverged=r["diverged"].astype(np.float64)) for r in runs],
        join="outer",
        compat="no_conflicts",
        combine_attrs="drop",
    )
    ds["diverged"] = ds["diverged"].fillna(0).astype(bool)
    ds = ds.transpose(*RUN_DIMS, "step", ...)
    ds.attrs["kind"] = kind
    ds.attrs["config"] = json.dumps(dict(config or {}), sort_keys=True)
    return ds
