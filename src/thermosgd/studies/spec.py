"""What a study is, resolved from what the user gave: a TOML path, a dict, or Python objects.

The TOML form (factory ``module:function`` in the file's folder, data from
[data]) can be rebuilt anywhere from its configuration, so its units run on
worker processes and Dask. A study given as Python objects (a factory callable,
tensors, a ``Dataset``) runs in this process; it resumes from a folder only when
its inputs can be fingerprinted (a factory defined in a file, data given as
tensors).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from thermosgd.config import StudyConfig, check_device_name, is_study, load_study_toml, study_from_dict
from thermosgd.errors import UsageError
from thermosgd.studies.data import Samples, StudyData, from_dataset, given
from thermosgd.studies.model import factory_file, fingerprint, import_factory


@dataclass(frozen=True)
class Study:
    """A study ready to run.

    Attributes:
        cfg: its configuration.
        factory: ``factory(seed=s) -> nn.Module``.
        data: its samples.
        fingerprint: SHA-256 over the factory's file and the data given in Python or by
            file; None when the inputs cannot be fingerprinted (then it does not resume).
        portable: rebuilt from ``stamp()`` alone (the TOML form): may run on workers.
    """

    cfg: StudyConfig
    factory: Callable[..., nn.Module]
    data: StudyData
    fingerprint: str | None
    portable: bool

    def stamp(self) -> dict[str, Any]:
        """What identifies the study's results: ``config.json`` and every unit's ``attrs["config"]``.

        ``[train] device`` is in it unless "cpu": results on a GPU differ from the CPU's in
        the last bits, so a folder resumes only on its own device, and a CPU folder written
        before the option still resumes.
        """
        cfg = self.cfg.to_dict()
        if cfg["train"]["device"] == "cpu":
            del cfg["train"]["device"]
        return {"study": cfg, "inputs_sha256": self.fingerprint}


def _hash_tensors(h, samples: Samples | None) -> None:
    if samples is not None:
        for t in (samples.x, samples.y):
            h.update(str((t.dtype, tuple(t.shape))).encode())
            h.update(t.contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def _callable_fingerprint(factory: Callable) -> str | None:
    """The file defining ``factory`` and its qualified name, or None (a REPL, a builtin)."""
    try:
        path = inspect.getsourcefile(factory)
    except TypeError:
        return None
    if not path or not Path(path).is_file():
        return None
    return fingerprint(Path(path)) + ":" + getattr(factory, "__qualname__", "")


def _samples(obj, cfg: StudyConfig, what: str) -> Samples | None:
    if obj is None:
        return None
    dtype = torch.float64 if cfg.train.dtype == "float64" else torch.float32
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        return given(obj[0], obj[1], cfg.train.loss, dtype, what)
    if hasattr(obj, "__getitem__") and hasattr(obj, "__len__"):
        return from_dataset(obj, cfg.train.loss, dtype)
    raise UsageError(f"{what} must be a pair (x, y) of tensors or a torch Dataset, got {type(obj).__name__}")


def resolve(spec, *, model: Callable | None = None, data=None, test_data=None, device: str | None = None) -> Study:
    """A :class:`Study` from a TOML path or a config dict, with optional Python objects.

    Args:
        spec: path of a study TOML, or its dict (sections as in the TOML; a dict
            without ``[model] factory`` needs ``model=``).
        model: a factory ``model(seed=s) -> nn.Module``, replacing ``[model] factory``.
        data: the training set, ``(x, y)`` tensors or a ``Dataset``, replacing [data].
        test_data: a held-out set, likewise.
        device: "cpu", "cuda" or "cuda:N", replacing ``[train] device`` (the spelling is
            checked here; whether the GPU exists, where training starts).
    """
    if isinstance(spec, (str, Path)):
        cfg = load_study_toml(spec)
    elif isinstance(spec, dict):
        raw = {k: dict(v) if isinstance(v, dict) else v for k, v in spec.items()}
        if model is None and not is_study(raw):
            raise UsageError('a study needs [model] factory = "module:function" or a model factory callable')
        if "model" in raw and raw["model"].get("factory"):
            raw["model"].setdefault("folder", str(Path.cwd()))
        cfg = study_from_dict(raw)
    elif isinstance(spec, StudyConfig):
        cfg = spec
    else:
        raise UsageError(f"study: spec must be a TOML path, a dict or a StudyConfig, got {type(spec).__name__}")
    if device is not None:
        try:
            check_device_name(device, "device")
        except UsageError as exc:
            raise UsageError(str(exc), param="device") from None
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, device=device))
    train, test = _samples(data, cfg, "data"), _samples(test_data, cfg, "test_data")
    h = hashlib.sha256()
    if model is not None:
        if not callable(model):
            raise UsageError(f"study: model must be a factory callable model(seed=s), got {type(model).__name__}")
        factory, part = model, _callable_fingerprint(model)
    else:
        if not cfg.model.factory:
            raise UsageError('a study needs [model] factory = "module:function" or a model factory callable')
        factory = import_factory(cfg.model.factory, cfg.model.folder)
        part = fingerprint(factory_file(cfg.model.factory, cfg.model.folder))
    samples = StudyData(cfg, train, test)
    _hash_tensors(h, samples.train)  # whatever the data came from: tensors, a file, a data set
    _hash_tensors(h, samples.test)
    fp = None if part is None else hashlib.sha256((part + h.hexdigest()).encode()).hexdigest()
    portable = model is None and data is None and test_data is None
    return Study(cfg, factory, samples, fp, portable)
