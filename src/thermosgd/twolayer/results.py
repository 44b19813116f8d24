"""Assemble an ensemble run's records into the results ``xarray.Dataset``."""

from __future__ import annotations

import json

import numpy as np
import torch
import xarray as xr

from thermosgd.config import SweepConfig


class Records:
    """Preallocated metric buffers, one row per recorded step.

    Args:
        names: variables to record. steps: ``(T,)`` the recorded steps.
        replicas: R. dtype: buffer dtype.
    """

    def __init__(self, names, steps: np.ndarray, replicas: int, dtype: torch.dtype):
        self.steps = np.asarray(steps)
        self.buf = {k: torch.full((len(self.steps), replicas), float("nan"), dtype=dtype) for k in names}

    def put(self, i: int, values: dict[str, torch.Tensor]) -> None:
        """Store the (R,) values of the ``i``-th recorded step."""
        for k, v in values.items():
            self.buf[k][i] = v


def to_dataset(
    cfg: SweepConfig,
    seeds,
    records: Records,
    diverged_step: np.ndarray,
    *,
    activation_rate_method: str,
    divergence_criterion: str,
) -> xr.Dataset:
    """The results of one run of the grid ``cfg.train.lr × cfg.train.batch_size × seeds``.

    Args:
        cfg: the configuration (stored as JSON in ``attrs["config"]``).
        seeds: the replica seeds (S).
        records: buffers (T, R), replicas ordered (lr, batch size, seed).
        diverged_step: (R,) first step at which a replica was found diverged, −1 if never.
        activation_rate_method: how the activation rate was computed (an attribute).
        divergence_criterion: when a replica counts as diverged, in words (an attribute).

    Returns:
        Dataset with dims (lr, batch_size, seed, step); see :func:`thermosgd.load`.
    """
    t = cfg.train
    L, K, S = len(t.lr), len(t.batch_size), len(seeds)
    dims = ("lr", "batch_size", "seed", "step")
    data: dict[str, tuple[tuple[str, ...], np.ndarray]] = {
        k: (dims, v.T.reshape(L, K, S, -1).numpy()) for k, v in records.buf.items()
    }
    if not cfg.model.bias:
        data["grad_var_b"] = (data["grad_var_b"][0], np.full_like(data["grad_var_b"][1], np.nan))
    diverged_step = np.asarray(diverged_step).reshape(L, K, S)
    data["diverged"] = (("lr", "batch_size", "seed"), diverged_step >= 0)
    data["diverged_step"] = (("lr", "batch_size", "seed"), diverged_step.astype(np.int32))
    ds = xr.Dataset(
        data,
        coords={
            "lr": np.array(t.lr, dtype=np.float64),
            "batch_size": np.array(t.batch_size, dtype=np.int32),
            "seed": np.array(seeds, dtype=np.int32),
            "step": records.steps.astype(np.int32),
        },
        attrs={
            "kind": "twolayer",
            "config": json.dumps(cfg.to_dict(), sort_keys=True),
            "activation_rate_method": activation_rate_method,
            "divergence_criterion": divergence_criterion,
            "grad_var_definition": (
                "mean over entries of var[minibatch gradient] = per-sample variance "
                "(unbiased, over the probe set) / |B| (Eq. 17-18)"
            ),
        },
    )
    ds["step"].attrs["long_name"] = "SGD iteration"
    return ds
