"""Seeded sample streams for the two-layer experiments (Sec. 4.1, App. A.6).

Every random draw comes from a ``torch.Generator`` whose seed is derived from
``(master seed, replica seed, stream id[, lr index, batch-size index])`` with
NumPy's ``SeedSequence``. A replica's numbers therefore depend on its
coordinates only, never on which other replicas are trained with it or in which
order work units run.

A finite training set is sampled as ``[train] sampling`` says: "iid" draws each
minibatch sample uniformly with replacement; "reshuffle" reads the set in
epochs, each a fresh permutation drawn from the same data stream, so the
sample sequence is a concatenation of permutations cut into minibatches (a
minibatch may straddle two epochs when |B| does not divide the set's size).
"""

from __future__ import annotations

import math
import zipfile

import numpy as np
import torch

from thermosgd.config import SweepConfig
from thermosgd.errors import UsageError
from thermosgd.files import open_regular
from thermosgd.seeds import derive_seed, generator, stream
from thermosgd.twolayer import philox

_NAMES = ("init", "data", "probe", "teacher", "trainset", "test", "noise", "noise_init")
INIT, DATA, PROBE, TEACHER, TRAINSET, TEST, NOISE, NOISE_INIT = (stream(f"twolayer.{n}") for n in _NAMES)


class Teacher:
    """A fixed random two-layer ReLU teacher: y = 1[f*(x − E x) > 0].

    W* ~ N(0, I/M), b* = 0, V* = ±1/√N* with alternating signs, so that about
    half of the inputs get each label.
    """

    def __init__(self, inputs: int, hidden: int, gen: torch.Generator, dtype: torch.dtype):
        self.W = torch.randn(hidden, inputs, generator=gen, dtype=dtype) / math.sqrt(inputs)
        signs = torch.tensor([(-1.0) ** i for i in range(hidden)], dtype=dtype)
        self.V = signs / math.sqrt(hidden)

    def __call__(self, x: torch.Tensor, center: float) -> torch.Tensor:
        return ((torch.relu((x - center) @ self.W.T) @ self.V) > 0).to(x.dtype)


class SampleStream:
    """Samples (x, y) of one replica seed's task.

    Args:
        cfg: the sweep configuration (model.inputs, data.*).
        master: master seed; seed: replica seed; extra: further coordinates
            (lr and batch-size indices) when data streams are not shared.
    """

    def __init__(
        self,
        cfg: SweepConfig,
        master: int,
        seed: int,
        *extra: int,
        dtype=torch.float32,
        dataset: UserData | None = None,
        counter_inputs: bool = False,
    ):
        self.cfg, self.dtype = cfg, dtype
        self.M = cfg.model.inputs
        self._coords = (master, seed)
        self._gen = generator(master, seed, DATA, *extra)
        d = cfg.data
        self.center = 0.0 if d.inputs == "gaussian" else 0.5
        self.teacher = (
            Teacher(self.M, d.teacher_hidden, generator(master, seed, TEACHER), dtype)
            if d.labels == "teacher"
            else None
        )
        # counter_inputs: the training stream's fresh Gaussian inputs, and its random labels, come
        # from Philox (:mod:`~thermosgd.twolayer.philox`; purposes 0 and 1), keyed by the data
        # stream's seed. The engine asks for it for the G-sample noise models.
        online_gaussian = dataset is None and not d.train_size and d.inputs == "gaussian"
        self._philox = derive_seed(master, seed, DATA, *extra) if counter_inputs and online_gaussian else None
        self._read_philox = [0, 0]  # the Philox streams' positions: normals, labels
        self.train_x: torch.Tensor | None = None
        self.train_y: torch.Tensor | None = None
        self._epoch = torch.empty(0, dtype=torch.long)  # the current epoch's order ("reshuffle")
        self._read = 0  # samples of it already used
        self.user = dataset
        if dataset is not None:
            self.train_x, self.train_y = dataset.x.to(dtype), dataset.y.to(dtype)
        elif d.train_size:
            g = generator(master, seed, TRAINSET)
            self.train_x, self.train_y = self.sample(d.train_size, g, balanced=True)
        self.reshuffle = cfg.train.sampling == "reshuffle" and self.train_x is not None

    @property
    def counter_based(self) -> bool:
        """Whether the training stream's fresh inputs come from Philox (``counter_inputs`` applied)."""
        return self._philox is not None

    def inputs(self, n: int, gen: torch.Generator, out: torch.Tensor | None = None) -> torch.Tensor:
        """n fresh inputs (n, M), drawn into ``out`` when given."""
        if self.cfg.data.inputs == "gaussian":
            if self._philox is not None and gen is self._gen:
                return self._counter((n, self.M), False, out)
            return torch.randn(n, self.M, generator=gen, dtype=self.dtype, out=out)
        return torch.rand(n, self.M, generator=gen, dtype=self.dtype, out=out)

    def _counter(self, shape: tuple[int, ...], labels: bool, out: torch.Tensor | None) -> torch.Tensor:
        """The training stream's next Gaussian inputs (n, M), or random labels (n,), from Philox
        (``counter_inputs``), into ``out`` when given."""
        assert self._philox is not None
        x = out if out is not None and out.is_contiguous() else torch.empty(shape, dtype=self.dtype)
        draw = philox.labels_into if labels else philox.normals_into
        draw(x.numpy().reshape(-1), self._philox, int(labels), self._read_philox[labels])
        self._read_philox[labels] += x.numel()
        return x if out is None or x is out else out.copy_(x)

    def sample(self, n: int, gen: torch.Generator, balanced: bool = False, out=None):
        """Fresh samples: x (n, M), y (n,) in {0, 1}; written into ``out`` = (x, y) when given."""
        x = self.inputs(n, gen, None if out is None else out[0])
        if self.teacher is not None:
            y = self.teacher(x, self.center)
        elif balanced:
            y = (torch.arange(n) % 2).to(self.dtype)[torch.randperm(n, generator=gen)]
        elif self._philox is not None and gen is self._gen:
            y = self._counter((n,), True, None if out is None else out[1])
            return x, y
        elif out is not None:  # the same 32-bit draws as the int64 ones below (tested equal)
            return x, torch.randint(0, 2, (n,), generator=gen, out=out[1])
        else:
            y = torch.randint(0, 2, (n,), generator=gen).to(self.dtype)
        return x, y if out is None else out[1].copy_(y)

    def batches(self, steps: int, batch: int):
        """The next ``steps`` minibatches: x (steps, batch, M), y (steps, batch)."""
        x, y = self.draw(steps * batch, self._gen, epochs=self.reshuffle)
        return x.view(steps, batch, self.M), y.view(steps, batch)

    def batches_into(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """The numbers of :meth:`batches`, flat, drawn into x (steps·batch, M) and y (steps·batch,).

        The engine draws hundreds of streams per chunk into one buffer, where
        copies and per-call overhead would cost more than the draws themselves.
        """
        self.draw(len(y), self._gen, out=(x, y), epochs=self.reshuffle)

    def draw(self, n: int, gen: torch.Generator, out=None, epochs: bool = False):
        """n training samples x (n, M), y (n,): fresh ones online, else drawn from the set.

        ``out``: (x, y) to write them into (contiguous, of the stream's dtype).
        ``epochs``: read the set in epochs without replacement (:meth:`epoch_indices`)
        instead of drawing with replacement.
        """
        xs, ys = self.train_x, self.train_y
        if xs is None or ys is None:
            return self.sample(n, gen, out=out)
        idx = self.epoch_indices(n, gen) if epochs else torch.randint(0, len(ys), (n,), generator=gen)
        if out is None:
            return xs[idx], ys[idx]
        return torch.index_select(xs, 0, idx, out=out[0]), torch.index_select(ys, 0, idx, out=out[1])

    def epoch_indices(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """The next n indices (n,) of the set read in epochs: each epoch a fresh permutation from ``gen``."""
        assert self.train_y is not None, "epochs need a finite training set"
        size, parts, need = len(self.train_y), [], n
        while need:
            if self._read == len(self._epoch):
                self._epoch, self._read = torch.randperm(size, generator=gen), 0
            take = min(need, size - self._read)
            parts.append(self._epoch[self._read : self._read + take])
            self._read += take
            need -= take
        return torch.cat(parts) if parts else torch.empty(0, dtype=torch.long)

    def probe(self):
        """Probe set (P, M), (P,): fixed fresh samples, or a training subset."""
        master, seed = self._coords
        P = self.cfg.data.probe_size
        g = generator(master, seed, PROBE)
        xs, ys = self.train_x, self.train_y
        if xs is None or ys is None:
            return self.sample(P, g, balanced=True)
        if len(ys) <= P:
            return xs, ys
        idx = torch.randperm(len(ys), generator=g)[:P]
        return xs[idx], ys[idx]

    def test(self):
        if self.user is not None:
            xt, yt = self.user.x_test, self.user.y_test
            return None if xt is None or yt is None else (xt.to(self.dtype), yt.to(self.dtype))
        master, seed = self._coords
        n = self.cfg.data.test_size
        if not n:
            return None
        return self.sample(n, generator(master, seed, TEST), balanced=True)


class UserData:
    """A user's data set: x (n, M), y (n,), optional held-out x_test, y_test.

    Args:
        x, y: training inputs and labels (labels in {0, 1} for the BCE loss):
            arrays or tensors of real numbers (complex, text, structured
            arrays and tensors that require grad are refused).
        x_test, y_test: optional held-out set for ``test_loss`` / ``test_error``.
        inputs: the model's input dimension M (checked).
        loss: "bce" or "mse" (BCE needs labels in {0, 1}).
        dtype: the training dtype ("float32" or "float64"): values beyond its
            range are refused, naming the array.
    """

    def __init__(self, x, y, x_test=None, y_test=None, *, inputs: int, loss: str, dtype: str = "float32"):
        self.x, self.y = _check_pair(x, y, inputs, loss, "x", "y", dtype)
        self.x_test = self.y_test = None
        if (x_test is None) != (y_test is None):
            raise UsageError("give both x_test and y_test, or neither")
        if x_test is not None:
            self.x_test, self.y_test = _check_pair(x_test, y_test, inputs, loss, "x_test", "y_test", dtype)

    @classmethod
    def from_arguments(cls, data, test_data=None, *, inputs: int, loss: str, dtype: str = "float32") -> UserData:
        """From ``train(cfg, data=(x, y), test_data=(x_test, y_test))``; each must be a pair."""
        pairs = []
        for name, pair in (("data", data), ("test_data", test_data)):
            if pair is None and name == "test_data":
                pairs += [None, None]
                continue
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                what = f"{len(pair)} items" if isinstance(pair, (tuple, list)) else type(pair).__name__
                raise UsageError(f"{name} must be a pair (x, y) of arrays or tensors, got {what}")
            pairs += list(pair)
        return cls(*pairs, inputs=inputs, loss=loss, dtype=dtype)

    @classmethod
    def from_npz(cls, path: str, *, inputs: int, loss: str, dtype: str = "float32") -> UserData:
        """Read ``x``, ``y`` (and ``x_test``, ``y_test`` if present) from an .npz, without pickle."""
        arrays = _read_npz(path)
        missing = [k for k in ("x", "y") if k not in arrays]
        if missing:
            raise UsageError(f"[data] file {path} lacks array(s) {', '.join(missing)} (has: {', '.join(arrays)})")
        return cls(
            arrays["x"], arrays["y"], arrays.get("x_test"), arrays.get("y_test"), inputs=inputs, loss=loss, dtype=dtype
        )


def _read_npz(path: str) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` (a zip of ``.npy`` members, as ``numpy.savez`` writes), never unpickled."""
    where = f"[data] file {path}"
    save_hint = "save it with numpy.savez(path, x=x, y=y)"
    with open_regular(path, "[data] file") as fh:  # a FIFO or device is refused, never read
        magic = fh.read(6)
    if magic == b"\x93NUMPY":
        raise UsageError(f"{where} is a single .npy array, not an .npz holding x and y; {save_hint}")
    if not zipfile.is_zipfile(path):
        raise UsageError(f"{where} is not an .npz file (a zip of .npy arrays); {save_hint}")
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as f, zipfile.ZipFile(path) as z:
            for member in z.namelist():
                if not member.endswith(".npy"):
                    raise UsageError(f"{where} holds {member!r}, which is not a .npy array; {save_hint}")
            for k in f.files:
                arrays[k] = f[k]
    except UsageError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, RuntimeError, NotImplementedError) as exc:
        # RuntimeError: an encrypted member; NotImplementedError: a compression zipfile lacks
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"cannot read {where}: {first}") from None
    return arrays


def _real_array(v, name: str) -> np.ndarray:
    """``v`` as a float64 array; refuses what would silently lose information."""
    if isinstance(v, torch.Tensor):
        if v.requires_grad:
            raise UsageError(f"{name} requires grad; pass {name}.detach() (the data are not trained)")
        if v.is_complex():
            raise UsageError(f"{name} is complex ({v.dtype}); the model takes real inputs")
        if v.is_meta:
            raise UsageError(f"{name} is on the 'meta' device (shapes only, no data); pass real values")
        # Casts that keep every value: sparse -> dense, bfloat16/half -> float32, a negated view resolved.
        v = v.to_dense() if v.layout != torch.strided else v
        v = v.float() if v.dtype in (torch.bfloat16, torch.float16) else v
        v = v.detach().resolve_neg().cpu().numpy()
    try:
        a = np.asarray(v)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{name} is not an array of numbers: {str(exc).splitlines()[0]}") from None
    if a.dtype.kind == "c":
        raise UsageError(f"{name} is complex ({a.dtype}); the model takes real inputs")
    if a.dtype.kind not in "biuf":
        raise UsageError(f"{name} must hold real numbers, got dtype {a.dtype}")
    return a.astype(np.float64)


def _check_pair(x, y, inputs: int, loss: str, xname: str, yname: str, dtype: str = "float32"):
    x = torch.as_tensor(_real_array(x, xname))
    y = torch.as_tensor(_real_array(y, yname))
    if x.ndim != 2 or x.shape[1] != inputs:
        raise UsageError(f"{xname} must have shape (n, {inputs}) for [model] inputs = {inputs}, got {tuple(x.shape)}")
    if y.shape != (x.shape[0],):
        raise UsageError(f"{yname} must have shape ({x.shape[0]},), got {tuple(y.shape)}")
    if x.shape[0] < 2:
        raise UsageError(f"{xname} needs at least 2 samples")
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise UsageError(f"{xname} and {yname} must be finite")
    limit = torch.finfo(torch.float32 if dtype == "float32" else torch.float64).max
    for name, t in ((xname, x), (yname, y)):
        big = float(t.abs().max())
        if big > limit:  # finite here, but inf once cast: every replica would "diverge" at step 0
            raise UsageError(
                f"{name} holds values up to {big:.3g}, beyond the range of {dtype} "
                f'({limit:.3g}); rescale it, or set [train] dtype = "float64"'
            )
    if loss == "bce" and not bool(((y == 0) | (y == 1)).all()):
        raise UsageError(f"{yname} must be 0 or 1 for the BCE loss")
    return x, y
