"""One schema for every sweep configuration (TOML files, presets, Python).

A configuration has four sections::

    [model]  inputs, hidden, bias, init, init_scale
    [data]   inputs, labels, train_size, probe_size, test_size, teacher_hidden
    [train]  loss, lr, batch_size, seeds, steps, record_every, probe_every,
             seed, share_init, share_data, dtype, runaway_factor, noise, gd_batch,
             device, fused, svag, sampling
    [sweep]  seeds_per_unit

Every key has a default (see the dataclasses below). Unknown keys, wrong types
and values outside the allowed set raise :class:`UsageError` naming the key and
what is allowed.
"""

from __future__ import annotations

import dataclasses
import numbers
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thermosgd.errors import UsageError
from thermosgd.files import read_regular

#: Upper bounds on the size of any run, checked once for every entry point (``presets`` re-exports them).
MAX_SEEDS = 1_000_000
MAX_STEPS = 10**9


@dataclass(frozen=True)
class ModelConfig:
    """Two-layer ReLU net f(x) = V σ(W x + b) (Sec. 4.1), scalar output.

    Attributes:
        inputs: input dimension M.
        hidden: hidden units N.
        bias: train a first-layer bias b (False: b ≡ 0, as in Eq. 64).
        init: "torch" = PyTorch's ``nn.Linear`` default, W, b ~ U(-1/√M, 1/√M),
            V ~ U(-1/√N, 1/√N); "gaussian" = W ~ N(0, 1/M), b = 0, V ~ N(0, 1/N).
        init_scale: multiplies every initial parameter.
    """

    inputs: int = 10
    hidden: int = 10
    bias: bool = True
    init: str = "torch"
    init_scale: float = 1.0


@dataclass(frozen=True)
class DataConfig:
    """Where samples come from.

    Attributes:
        inputs: "gaussian" (x ~ N(0, I)) or "uniform" (x ~ U(0,1)^M, App. A.6).
        labels: "random" (y ~ Bernoulli(1/2), balanced in expectation; exactly
            balanced for a finite set) or "teacher" (y = 1[f*(x - E x) > 0] for a
            fixed random two-layer teacher f* with ``teacher_hidden`` units: a
            learnable task).
        train_size: 0 = online (fresh samples every step); n > 0 = a finite
            training set of n samples, minibatches drawn i.i.d. with replacement.
        probe_size: samples used for probe-set instruments (loss, gradient
            variance, Monte-Carlo activation rate): fresh samples for online
            training, else a fixed subset of the training set (all of it if
            smaller).
        test_size: held-out samples for ``test_error`` / ``test_loss`` (0 = none).
        teacher_hidden: hidden units of the teacher.
        file: with ``inputs = "file"`` and ``labels = "file"``: an ``.npz`` with
            arrays ``x`` (n, M) and ``y`` (n,) (labels in {0, 1} for BCE), and
            optionally ``x_test``, ``y_test``; read without pickle. It is the
            finite training set (``train_size`` is ignored); in Python, pass
            tensors to ``thermosgd.train(cfg, data=(x, y))`` instead.
    """

    inputs: str = "gaussian"
    labels: str = "random"
    train_size: int = 0
    probe_size: int = 256
    test_size: int = 0
    teacher_hidden: int = 8
    file: str = ""


@dataclass(frozen=True)
class TrainConfig:
    """SGD (Eq. 13), or a noise-model control of it, over a grid of learning rates × batch sizes × seeds.

    Attributes:
        loss: "bce" (binary cross-entropy on logit f, Eq. 15–16) or "mse" (½(f−y)²).
        lr: learning rates η (each > 0 and a normal float, at least 2.2e-308).
        batch_size: batch sizes |B| (each ≥ 1).
        seeds: number of seeds (0, 1, ..., seeds-1) or an explicit list.
        steps: SGD iterations T.
        record_every: record the cheap instruments every k steps (k = 1 allowed).
        probe_every: record the probe-set instruments (loss, error, gradient
            variance) every k steps; 0 = same as ``record_every``. Must be a
            multiple of ``record_every``; at other recorded steps they are NaN.
        seed: master seed; every random draw derives from (seed, replica seed).
        share_init: replicas with the same seed share their initialization.
        share_data: replicas with the same seed share their data stream (|B|=b
            uses the first b samples of the largest batch), so their curves
            differ only by the hyperparameter.
        dtype: "float32" or "float64".
        runaway_factor: k of the divergence criterion. A replica is marked
            ``diverged`` (and frozen) at the first recorded step where its
            parameters are not finite, its parameter norm ‖θ‖ (‖θ‖² = ‖W‖_F² +
            ‖b‖² + ‖V‖²) exceeds k × its value at step 0, or its probe loss
            exceeds k × its value at step 0. 0 = catch non-finite values only.
        noise: the noise model of each step θ ← θ − η(g + ξ) (docs/mechanism.md, "Noise
            models"): "sgd" = a minibatch of |B| samples (g + ξ = minibatch
            gradient); "gd" = the mean gradient ḡ over ``gd_batch`` = G fresh
            samples (ξ = 0: the deterministic drift alone, noise reduced G-fold);
            "gaussian" = ḡ plus ξ ~ N(0, Σ(θ)/|B|), Σ(θ) the per-sample-gradient
            covariance on the same G samples (SGD's first two moments, Gaussian);
            "frozen" = ḡ plus ξ ~ N(0, diag(σ₀²)/|B|), σ₀² each entry's
            per-sample-gradient variance at initialization, estimated once per
            replica on G samples (same initial size, no dependence on θ).
        gd_batch: G, samples per step of "gd", "gaussian" and "frozen" (≥ 2).
        device: where the arithmetic runs: "cpu", "cuda" or "cuda:N". Random
            numbers are always drawn on the CPU from the same per-replica
            generators and then moved, so the draws are bit-identical on every
            device; GPU arithmetic differs from the CPU's in the last bits (docs/devices.md,
            "Devices"). Part of the configuration because results depend on it
            at that level (a sweep folder resumes only on the same device).
        fused: true (default): run through the compiled loops of
            :mod:`thermosgd.twolayer.fused` wherever they apply (every noise
            model on the CPU, numba importable; on a GPU the torch path runs, and
            a missing numba is said once on stderr): the same random numbers,
            results equal to the torch path to floating-point tolerance, not
            bit-identical. false: the torch reference path.
        svag: l, the SVAG factor (Li, Malladi & Arora 2021, arXiv 2102.12470;
            :mod:`thermosgd.twolayer.steps`): each step becomes l steps of size
            η/l with the same mean drift per unit of η·steps and l times the noise
            covariance per step, so l → ∞ approaches the SDE limit. 1 = the process
            as configured. ``steps``, ``record_every`` and ``probe_every`` stay
            in the original step units (l·steps updates run; records land at the
            same step coordinates for every l).
        sampling: how minibatches are drawn from a finite training set
            (``[data] train_size > 0`` or a data file): "iid" = each sample
            uniformly with replacement; "reshuffle" = epochs without
            replacement (each epoch a fresh permutation from the replica's own
            data stream; every sample used once per epoch), as Smith et al.
            (ICLR 2021) assume.
    """

    loss: str = "bce"
    lr: tuple[float, ...] = (0.05,)
    batch_size: tuple[int, ...] = (1,)
    seeds: tuple[int, ...] = (0,)
    steps: int = 1000
    record_every: int = 1
    probe_every: int = 0
    seed: int = 0
    share_init: bool = True
    share_data: bool = True
    dtype: str = "float32"
    runaway_factor: float = 100.0
    noise: str = "sgd"
    gd_batch: int = 1024
    device: str = "cpu"
    fused: bool = True
    svag: int = 1
    sampling: str = "iid"


@dataclass(frozen=True)
class UnitConfig:
    """How a sweep is cut into work units (one unit = a block of seeds).

    Attributes:
        seeds_per_unit: ``"auto"`` (default): units sized by work, each big
            enough to run at engine speed and short enough (about a minute on
            one core, unless one engine call alone takes longer) that a killed
            sweep loses little; or a positive integer: that many seeds per unit.
            Results are the same bits either way (see ``thermosgd.sweep.units``);
            it only decides what is written together and what a resume redoes.
    """

    seeds_per_unit: int | str = "auto"


@dataclass(frozen=True)
class SweepConfig:
    """A two-layer sweep's validated configuration: sections ``model``, ``data``, ``train``, ``sweep``.

    Frozen: ``cfg.train.lr = 0.1`` or ``cfg.train = ...`` raises :class:`FrozenConfigError` (a
    ``UsageError`` and a ``dataclasses.FrozenInstanceError``). Change a config by making a checked
    copy: ``cfg = cfg.replace(train={"lr": [0.1]})``.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sweep: UnitConfig = field(default_factory=UnitConfig)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["train"]["lr"] = list(self.train.lr)
        out["train"]["batch_size"] = list(self.train.batch_size)
        out["train"]["seeds"] = list(self.train.seeds)
        return out

    @property
    def probe_every_steps(self) -> int:
        return self.train.probe_every or self.train.record_every

    def replace(self, **sections: dict[str, Any]) -> SweepConfig:
        """Return a copy with some keys changed: ``cfg.replace(train={"steps": 10})``."""
        raw = self.to_dict()
        for section, values in sections.items():
            if section not in raw:
                raise UsageError(f"unknown config section [{section}]; allowed: {', '.join(raw)}")
            if not isinstance(values, dict):
                raise UsageError(f"replace: {section}= must be a dict of keys, e.g. {section}={{...}}, got {values!r}")
            raw[section].update(values)
        return from_dict(raw)


class FrozenConfigError(UsageError, dataclasses.FrozenInstanceError):
    """An assignment to a configuration (frozen): the message says how to change one.

    Both a :class:`~thermosgd.errors.UsageError` and the
    :class:`dataclasses.FrozenInstanceError` a frozen dataclass raises, so either ``except`` catches it.
    """


def _say_how_to_change(cls: type, section: str | None) -> None:
    """Replace a frozen config class's ``__setattr__``/``__delattr__`` (both refuse every assignment) by
    ones whose error names :meth:`SweepConfig.replace`; ``section`` is the class's section, None for
    :class:`SweepConfig` itself. ``__init__`` and :func:`dataclasses.replace` set fields through
    ``object.__setattr__`` and are not affected."""

    def refuse(self, name: str, *value) -> None:
        key = name if section is None else f"{section}.{name}"
        how = f"{name}={{...}}" if section is None else f"{section}={{{name!r}: ...}}"
        raise FrozenConfigError(
            f"cannot assign to cfg.{key}: a config is frozen (validated once); "
            f"make a changed copy with cfg = cfg.replace({how}), which checks the new values",
            param=name,
        )

    cls.__setattr__ = refuse  # type: ignore[method-assign]
    cls.__delattr__ = refuse  # type: ignore[method-assign, assignment]


_SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "sweep": UnitConfig}
for _name, _cls in _SECTIONS.items():
    _say_how_to_change(_cls, _name)
_say_how_to_change(SweepConfig, None)
_CHOICES = {
    ("model", "init"): ("torch", "gaussian"),
    ("data", "inputs"): ("gaussian", "uniform", "file"),
    ("data", "labels"): ("random", "teacher", "file"),
    ("train", "loss"): ("bce", "mse"),
    ("train", "dtype"): ("float32", "float64"),
    ("train", "noise"): ("sgd", "gd", "gaussian", "frozen"),
    ("train", "sampling"): ("iid", "reshuffle"),
}
_POSITIVE = {
    ("model", "inputs"),
    ("model", "hidden"),
    ("data", "probe_size"),
    ("data", "teacher_hidden"),
    ("train", "steps"),
    ("train", "record_every"),
    ("train", "svag"),
}
_NONNEGATIVE = {("data", "train_size"), ("data", "test_size"), ("train", "probe_every"), ("train", "seed")}
_MAX_SEED = 2**63 - 1  # the master seed only enters SeedSequence
#: Replica seeds are stored as NetCDF int32 coordinates: they must lie in [0, 2^31).
SEED_LIMIT = 2**31
MAX_CONFIG_BYTES = 1 << 20  # a config file is a few lines; /dev/zero must not be read for ever


def _check_scalar(section: str, key: str, value: Any, kind: type) -> Any:
    where = f"[{section}] {key}"
    if kind is bool:
        if not isinstance(value, bool):
            raise UsageError(f"{where} must be true or false, got {value!r}")
        return value
    if kind is int:  # NumPy integer scalars count (numbers.Integral), bools do not
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise UsageError(f"{where} must be an integer, got {value!r}")
        return int(value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise UsageError(f"{where} must be a number, got {value!r}")
        try:
            return float(value)
        except OverflowError:  # an integer beyond the largest float
            raise UsageError(
                f"{where} is too large for a floating-point number (got an integer of {len(str(value))} digits)"
            ) from None
    if kind is str:
        if not isinstance(value, str):
            raise UsageError(f"{where} must be a string, got {value!r}")
        return value
    raise AssertionError(kind)  # pragma: no cover


def _as_tuple(section: str, key: str, value: Any, kind: type) -> tuple:
    items = value if isinstance(value, (list, tuple)) else [value]
    if len(items) == 0:
        raise UsageError(f"[{section}] {key} must not be empty")
    out = tuple(_check_scalar(section, key, v, kind) for v in items)
    if len(set(out)) != len(out):
        raise UsageError(f"[{section}] {key} has repeated values: {list(out)}")
    return out


def from_dict(raw: dict[str, Any]) -> SweepConfig:
    """Validate a nested dict (as read from TOML) into a :class:`SweepConfig`."""
    if not isinstance(raw, dict):
        raise UsageError("config must be a table of sections")
    cfg = SweepConfig(**_sections(raw, _SECTIONS, "config"))
    _check_values(cfg)
    return cfg


def _sections(raw: dict[str, Any], sections: dict[str, type], what: str) -> dict[str, Any]:
    """Each section of ``raw`` built into its dataclass, every key converted and checked."""
    unknown = set(raw) - set(sections)
    if unknown:
        raise UsageError(f"unknown {what} section [{sorted(unknown)[0]}]; allowed: {', '.join(sections)}")
    built = {}
    for section, cls in sections.items():
        values = raw.get(section, {}) or {}
        if not isinstance(values, dict):
            raise UsageError(f"[{section}] must be a table")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        bad = set(values) - set(fields)
        if bad:
            raise UsageError(f"unknown key [{section}] {sorted(bad)[0]}; allowed: {', '.join(fields)}")
        built[section] = cls(**{key: _convert(section, key, value, fields[key]) for key, value in values.items()})
    return built


def _convert(section: str, key: str, value: Any, fld: dataclasses.Field) -> Any:
    if (section, key) == ("sweep", "seeds_per_unit"):
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
            raise UsageError(f'[sweep] seeds_per_unit must be "auto" or a positive integer, got {value!r}')
        return int(value)
    if (section, key) == ("train", "seeds"):
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            if int(value) <= 0:
                raise UsageError(f"[train] seeds must be positive, got {value}")
            if int(value) > MAX_SEEDS:
                raise UsageError(f"[train] seeds = {value} is beyond the supported maximum {MAX_SEEDS}")
            return tuple(range(int(value)))
        if isinstance(value, (list, tuple)) and len(value) > MAX_SEEDS:
            raise UsageError(f"[train] seeds lists {len(value)} seeds, beyond the supported maximum {MAX_SEEDS}")
        out = _as_tuple(section, key, value, int)
        if min(out) < 0 or max(out) >= SEED_LIMIT:
            raise UsageError(f"[train] seeds must be integers in [0, 2^31), got {list(out)[:8]}")
        return out
    if (section, key) == ("record", "steps"):  # studies: the recorded steps, or [] for [record] points
        return tuple(sorted(_as_tuple(section, key, value, int))) if value != [] else ()
    if key in ("lr", "batch_size") and section == "train":
        return _as_tuple(section, key, value, float if key == "lr" else int)
    kind = {"int": int, "float": float, "bool": bool, "str": str}[str(fld.type)]
    return _check_scalar(section, key, value, kind)


def _check_values(cfg: SweepConfig) -> None:
    for (section, key), allowed in _CHOICES.items():
        value = getattr(getattr(cfg, section), key)
        if value not in allowed:
            raise UsageError(f"[{section}] {key} = {value!r} is not one of: {', '.join(allowed)}")
    for section, key in _POSITIVE:
        value = getattr(getattr(cfg, section), key)
        if value <= 0:
            raise UsageError(f"[{section}] {key} must be positive, got {value}")
    for section, key in _NONNEGATIVE:
        value = getattr(getattr(cfg, section), key)
        if value < 0:
            raise UsageError(f"[{section}] {key} must be nonnegative, got {value}")
    t = cfg.train
    _check_lr(t.lr)
    if t.seed > _MAX_SEED:
        raise UsageError(f"[train] seed must be below 2^63, got {t.seed}")
    if t.steps > MAX_STEPS:
        raise UsageError(f"[train] steps = {t.steps} is beyond the supported maximum {MAX_STEPS}")
    if t.steps * t.svag > MAX_STEPS:
        raise UsageError(
            f"[train] svag = {t.svag} makes {t.steps * t.svag} updates, beyond the supported maximum {MAX_STEPS}"
        )
    if cfg.data.probe_size < 2:
        raise UsageError(
            f"[data] probe_size must be at least 2 (a variance needs two samples), got {cfg.data.probe_size}"
        )
    if any(b < 1 for b in t.batch_size):
        raise UsageError(f"[train] batch_size must be ≥ 1, got {list(t.batch_size)}")
    if t.probe_every and t.probe_every % t.record_every:
        raise UsageError(f"[train] probe_every ({t.probe_every}) must be a multiple of record_every ({t.record_every})")
    check_device_name(t.device, "[train] device")
    if t.gd_batch < 2:
        raise UsageError(f"[train] gd_batch must be at least 2 (a variance needs two samples), got {t.gd_batch}")
    if not (t.runaway_factor == 0 or 1 < t.runaway_factor < float("inf")):
        raise UsageError(f"[train] runaway_factor must be 0 (off) or a finite number above 1, got {t.runaway_factor}")
    if not (0 < cfg.model.init_scale < float("inf")):
        # 0 would make every ‖W_i‖ = 0, where the activation rate Φ(b_i/‖W_i‖) is undefined.
        raise UsageError(f"[model] init_scale must be positive and finite, got {cfg.model.init_scale}")
    d = cfg.data
    if (d.inputs == "file") != (d.labels == "file"):
        raise UsageError('[data] inputs = "file" and labels = "file" go together (both come from [data] file)')
    if d.file and d.inputs != "file":
        raise UsageError('[data] file is read only with inputs = "file" and labels = "file"')
    if cfg.data.train_size and cfg.data.train_size < 2:
        raise UsageError("[data] train_size must be 0 (online) or at least 2")
    _check_sampling(cfg)


def _check_sampling(cfg: SweepConfig) -> None:
    """Epochs without replacement need a finite set, and one batch size per shared stream."""
    t, d = cfg.train, cfg.data
    if t.sampling != "reshuffle":
        return
    if not d.train_size and d.inputs != "file":
        raise UsageError(
            '[train] sampling = "reshuffle" needs a finite training set ([data] train_size > 0 or inputs = "file")'
        )
    if t.share_data and len(t.batch_size) > 1 and t.noise == "sgd":
        # A shared stream hands |B| = b the first b samples of each largest batch: not once per epoch.
        raise UsageError(
            '[train] sampling = "reshuffle" with several batch sizes needs share_data = false '
            "(a shared stream would not use every sample once per epoch at the smaller sizes)"
        )


def check_device_name(name: Any, where: str = "device") -> str:
    """``name`` if it is "cpu", "cuda" or "cuda:N"; else a UsageError naming ``where``.

    Only the spelling is checked here (no torch import); whether the device
    exists is checked where training starts (:func:`thermosgd.checks.torch_device`).
    """
    if not isinstance(name, str) or not re.fullmatch(r"cpu|cuda(:(0|[1-9][0-9]{0,3}))?", name):
        raise UsageError(f'{where} must be "cpu", "cuda" or "cuda:N" (N = 0, 1, ...), got {name!r}')
    return name


def load_toml(path: str | Path) -> SweepConfig:
    """Read and validate a TOML sweep configuration (at most 1 MiB, UTF-8)."""
    path = Path(path)
    raw = _read_toml(path)
    data = raw.get("data")
    if isinstance(data, dict) and isinstance(data.get("file"), str) and data["file"]:
        # A data file is relative to the config file, not to where the command runs.
        file = (path.parent / data["file"]).resolve()
        if not file.is_file():
            raise UsageError(f"[data] file {data['file']!r} not found (looked for {file})")
        data["file"] = str(file)
    return from_dict(raw)


# ---------------------------------------------------------------------------
# Studies: the same experiment on any nn.Module (``thermosgd study``). A study
# TOML is told apart from a two-layer sweep by ``[model] factory``. Keys that mean
# what a two-layer key means share its name (loss, lr, batch_size, seeds, steps,
# seed, dtype, noise, gd_batch, probe_size, train_size, test_size, file,
# seeds_per_unit).


@dataclass(frozen=True)
class StudyModelConfig:
    """The model of a study.

    Attributes:
        factory: ``"module:function"``; ``function(seed=s)`` returns a fresh ``nn.Module``
            for seed ``s``. The module is imported from ``folder``.
        folder: where ``module`` is imported from (a TOML file's own folder; absolute).
    """

    factory: str = ""
    folder: str = ""


@dataclass(frozen=True)
class StudyDataConfig:
    """Where a study's samples come from.

    Attributes:
        source: "gaussian" (x ~ N(0, I_dim), random balanced binary labels), "file"
            (an .npz with x, y and optionally x_test, y_test), "digits" (scikit-learn's
            8x8 digits, 10 classes; its last 360 images held out), "fashion-mnist" or
            "cifar10" (the paper's files in ``data_dir``; their test split held out when present).
        dim: gaussian: the input dimension.
        online: gaussian: fresh samples every step (false: a finite set of ``train_size``).
        train_size: gaussian with ``online = false``: the training set's size.
        probe_size: the fixed probe set the instruments measure on (online: fresh
            samples drawn once; else the first ``probe_size`` training samples).
        test_size: gaussian: held-out samples for test loss and accuracy (0: none).
        file: source "file": the .npz path (relative to the TOML file).
        data_dir: sources "fashion-mnist" and "cifar10": the folder of the paper's data
            files (relative to the TOML file; "" = ``$THERMOSGD_DATA``).
    """

    source: str = "gaussian"
    dim: int = 20
    online: bool = True
    train_size: int = 1024  # used only with online = false (two-layer: 0 means online)
    probe_size: int = 256
    test_size: int = 0
    file: str = ""
    data_dir: str = ""


@dataclass(frozen=True)
class StudyTrainConfig:
    """The grid lr × batch_size × seeds and the update rule (noise models as in :class:`TrainConfig`).

    Attributes:
        loss: "bce" (logistic loss on a scalar logit, labels in {0, 1}), "cross_entropy"
            (softmax over logits, integer labels) or "mse" (½‖f − y‖², as the two-layer "mse").
        lr, batch_size, seeds, steps, seed, dtype, noise, gd_batch: as in :class:`TrainConfig`.
        device: where the arithmetic runs: "cpu", "cuda" or "cuda:N". Models are built and
            every random number is drawn on the CPU as on a CPU run, then moved, so the
            initial weights and draws are bit-identical on every device; results equal the
            CPU's to floating-point tolerance (docs/devices.md). A study folder resumes only
            on the device it was started on.
    """

    loss: str = "bce"
    lr: tuple[float, ...] = (0.05,)
    batch_size: tuple[int, ...] = (1,)
    seeds: tuple[int, ...] = (0,)
    steps: int = 1000
    seed: int = 0
    dtype: str = "float32"
    noise: str = "sgd"
    gd_batch: int = 1024
    device: str = "cpu"


@dataclass(frozen=True)
class StudyRecordConfig:
    """When and what a study records.

    Attributes:
        steps: the recorded steps (each in ``0..[train] steps``), or empty for ``points``.
        points: about this many log-spaced steps from 0 to ``[train] steps`` (used when
            ``steps`` is empty; default 30).
        hessian: also Hutchinson's estimate of the Hessian trace of the probe loss, with its s.e.
        hessian_samples: Rademacher probes of that estimate (≥ 2).
    """

    steps: tuple[int, ...] = ()
    points: int = 30
    hessian: bool = False
    hessian_samples: int = 16


@dataclass(frozen=True)
class StudyConfig:
    model: StudyModelConfig = field(default_factory=StudyModelConfig)
    data: StudyDataConfig = field(default_factory=StudyDataConfig)
    train: StudyTrainConfig = field(default_factory=StudyTrainConfig)
    record: StudyRecordConfig = field(default_factory=StudyRecordConfig)
    sweep: UnitConfig = field(default_factory=UnitConfig)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key in ("lr", "batch_size", "seeds"):
            out["train"][key] = list(out["train"][key])
        out["record"]["steps"] = list(out["record"]["steps"])
        return out


_STUDY_SECTIONS = {
    "model": StudyModelConfig,
    "data": StudyDataConfig,
    "train": StudyTrainConfig,
    "record": StudyRecordConfig,
    "sweep": UnitConfig,
}
_STUDY_CHOICES = {
    ("data", "source"): ("gaussian", "file", "digits", "fashion-mnist", "cifar10"),
    ("train", "loss"): ("bce", "cross_entropy", "mse"),
    ("train", "dtype"): ("float32", "float64"),
    ("train", "noise"): ("sgd", "gd", "gaussian", "frozen"),
}


def is_study(raw: Any) -> bool:
    """A study configuration (it names a model factory), not a two-layer sweep's."""
    return isinstance(raw, dict) and isinstance(raw.get("model"), dict) and "factory" in raw["model"]


def study_from_dict(raw: dict[str, Any]) -> StudyConfig:
    """Validate a nested dict (as read from TOML) into a :class:`StudyConfig`."""
    if not isinstance(raw, dict):
        raise UsageError("config must be a table of sections")
    cfg = StudyConfig(**_sections(raw, _STUDY_SECTIONS, "study"))
    _check_study(cfg)
    return cfg


def _check_lr(lrs: tuple[float, ...]) -> None:
    """Learning rates: positive, finite, below 1e30 and normal floats (a subnormal η such as 5e-324
    makes every update round to nothing, and the rescaled iterations t·η/η_ref under- or overflow)."""
    if any(not (0 < lr < 1e30) for lr in lrs):
        raise UsageError(f"[train] lr must be positive, finite and below 1e30, got {list(lrs)}")
    tiny = [lr for lr in lrs if lr < sys.float_info.min]
    if tiny:
        raise UsageError(
            f"[train] lr = {tiny[0]:g} is below the smallest normal float ({sys.float_info.min:.3g}): "
            "steps that small would not move the parameters"
        )


def _check_study(cfg: StudyConfig) -> None:
    for (section, key), allowed in _STUDY_CHOICES.items():
        value = getattr(getattr(cfg, section), key)
        if value not in allowed:
            raise UsageError(f"[{section}] {key} = {value!r} is not one of: {', '.join(allowed)}")
    m, d, t, r = cfg.model, cfg.data, cfg.train, cfg.record
    check_device_name(t.device, "[train] device")
    if m.factory and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", m.factory):
        raise UsageError(f'[model] factory must read "module:function", got {m.factory!r}')
    for where, value, low in (
        ("[data] dim", d.dim, 1),
        ("[data] probe_size", d.probe_size, 2),
        ("[data] train_size", d.train_size, 2),
        ("[train] steps", t.steps, 1),
        ("[train] gd_batch", t.gd_batch, 2),
        ("[record] points", r.points, 1),
        ("[record] hessian_samples", r.hessian_samples, 2),
    ):
        if value < low:
            raise UsageError(f"{where} must be at least {low}, got {value}")
    if d.test_size < 0 or t.seed < 0 or t.seed > _MAX_SEED:
        raise UsageError("[data] test_size and [train] seed must be nonnegative (seed below 2^63)")
    _check_lr(t.lr)
    if any(b < 1 for b in t.batch_size):
        raise UsageError(f"[train] batch_size must be ≥ 1, got {list(t.batch_size)}")
    if t.steps > MAX_STEPS:
        raise UsageError(f"[train] steps = {t.steps} is beyond the supported maximum {MAX_STEPS}")
    if r.steps and (r.steps[0] < 0 or r.steps[-1] > t.steps):
        raise UsageError(f"[record] steps must lie in 0..{t.steps} ([train] steps), got {list(r.steps)}")
    if (d.source == "file") != bool(d.file):
        raise UsageError('[data] file is given exactly when source = "file"')


def load_study_toml(path: str | Path) -> StudyConfig:
    """Read and validate a study TOML; its factory module and data file are found from its folder."""
    path = Path(path)
    raw = _read_toml(path)
    if not is_study(raw):
        raise UsageError(f'{path} is not a study: it has no [model] factory = "module:function"')
    model = raw["model"]
    model.setdefault("folder", str(path.resolve().parent))
    data = raw.get("data")
    if isinstance(data, dict) and isinstance(data.get("file"), str) and data["file"]:
        file = (path.parent / data["file"]).resolve()
        if not file.is_file():
            raise UsageError(f"[data] file {data['file']!r} not found (looked for {file})")
        data["file"] = str(file)
    if isinstance(data, dict) and isinstance(data.get("data_dir"), str) and data["data_dir"]:
        data["data_dir"] = str((path.parent / data["data_dir"]).resolve())
    return study_from_dict(raw)


def _read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's table (at most 1 MiB, UTF-8), or one UsageError line."""
    raw_bytes = read_regular(path, "config", MAX_CONFIG_BYTES)  # a pipe or device is refused, never read
    if len(raw_bytes) > MAX_CONFIG_BYTES:
        raise UsageError(
            f"config {path} is larger than {MAX_CONFIG_BYTES >> 20} MiB; a sweep configuration is a few lines of TOML"
        )
    try:  # utf-8-sig: a byte-order mark, as some editors write one, is not part of the TOML
        text = raw_bytes.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"config {path} is not UTF-8 text (byte {exc.start}); TOML files must be UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"malformed TOML in {path}: {exc}") from None
