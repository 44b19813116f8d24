"""A study's samples: the training stream, the probe set and the held-out set of one seed.

Every draw comes from a generator seeded by ``derive_seed(master, seed, stream, ...)``,
so a seed's samples never depend on which other seeds, learning rates or work units
run with it. All learning rates of a seed and batch size see the same samples
(common random numbers): their curves differ only by η.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from thermosgd.config import StudyConfig
from thermosgd.errors import UsageError
from thermosgd.twolayer.data import _read_npz, derive_seed

# Stream ids of derive_seed(master, seed, STREAM, ...).
INIT, DATA, PROBE, TRAINSET, TEST, NOISE, NOISE_INIT, HESSIAN = range(8)


def generator(*coords: int) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(*coords))


@dataclass(frozen=True)
class Samples:
    """A finite set of samples: inputs ``(n, *input_shape)`` and targets ``(n, *target_shape)``."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def head(self, n: int) -> Samples:
        return Samples(self.x[:n], self.y[:n])


def _labels(y: torch.Tensor, loss: str, dtype: torch.dtype) -> torch.Tensor:
    """Targets as the loss wants them: class indices (int64) for cross-entropy, floats otherwise."""
    if loss == "cross_entropy":
        if y.is_floating_point() and not bool((y == y.round()).all()):
            raise UsageError("cross_entropy needs integer class labels y")
        return y.to(torch.int64)
    return y.to(dtype)


def given(x, y, loss: str, dtype: torch.dtype, what: str = "data") -> Samples:
    """Samples from arrays or tensors of the user's, checked to pair up.

    Floating-point inputs are cast to the study's dtype; integer inputs become int64
    (token ids for an ``nn.Embedding``).
    """
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.ndim < 1 or y.ndim < 1 or x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise UsageError(
            f"{what}: x and y need the same leading number (≥ 2) of samples, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    return Samples(x.to(dtype) if x.is_floating_point() else x.to(torch.int64), _labels(y, loss, dtype))


def from_dataset(dataset, loss: str, dtype: torch.dtype) -> Samples:
    """Every item ``(x, y)`` of a map-style ``torch.utils.data.Dataset``, stacked."""
    try:
        items = [dataset[i] for i in range(len(dataset))]
        xs, ys = zip(*items)
        return given(torch.stack([torch.as_tensor(v) for v in xs]), torch.as_tensor(np.array(ys)), loss, dtype)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise UsageError(f"data: a Dataset must give (x, y) pairs of tensors of one shape: {exc}") from None


class StudyData:
    """Samples of one study: a finite training set or an online Gaussian stream.

    Args:
        cfg: the study's configuration ([data], [train] loss and dtype).
        train: a finite training set given in Python (overrides [data]), or None.
        test: a held-out set given in Python, or None.
    """

    def __init__(self, cfg: StudyConfig, train: Samples | None = None, test: Samples | None = None):
        d, t = cfg.data, cfg.train
        self.cfg, self.loss = cfg, t.loss
        self.dtype = torch.float64 if t.dtype == "float64" else torch.float32
        self.master = t.seed
        self.online = train is None and d.source == "gaussian" and d.online
        self.train, self.test = train, test
        if train is None and d.source == "file":
            arrays = _read_npz(d.file)
            if "x" not in arrays or "y" not in arrays:
                raise UsageError(f"[data] file {d.file} must hold arrays x and y (and optionally x_test, y_test)")
            self.train = given(arrays["x"], arrays["y"], t.loss, self.dtype, f"[data] file {d.file}")
            if "x_test" in arrays and "y_test" in arrays:
                self.test = given(arrays["x_test"], arrays["y_test"], t.loss, self.dtype, f"[data] file {d.file}")
        elif train is None and d.source in ("digits", "fashion-mnist", "cifar10"):
            self.train, self.test = self._images(d.source, d.data_dir or None)
        if self.train is not None and len(self.train) < d.probe_size:
            raise UsageError(f"[data] probe_size = {d.probe_size} exceeds the {len(self.train)} training samples")

    def _images(self, name: str, data_dir: str | None) -> tuple[Samples, Samples | None]:
        """An image data set's training split and, when its files are there, its test split."""
        from thermosgd.data import load_dataset

        def samples(split: str) -> Samples:
            images = load_dataset(name, data_dir, split=split)
            return given(images.images.astype(np.float32) * images.scale, images.labels, self.loss, self.dtype)

        train = samples("train")
        try:
            return train, samples("test")
        except UsageError:  # no test files: no held-out set (the training split is all there is)
            return train, None

    def _gaussian(self, n: int, gen: torch.Generator, balanced: bool = False) -> Samples:
        x = torch.randn(n, self.cfg.data.dim, generator=gen, dtype=self.dtype)
        if balanced:  # a finite set: exactly half of each label, shuffled
            y = (torch.randperm(n, generator=gen) < n // 2).to(torch.int64)
        else:
            y = torch.randint(0, 2, (n,), generator=gen)
        return Samples(x, _labels(y, self.loss, self.dtype))

    def training_set(self, seed: int) -> Samples | None:
        """The finite training set of ``seed`` (None when online)."""
        if self.online:
            return None
        if self.train is not None:
            return self.train
        return self._gaussian(self.cfg.data.train_size, generator(self.master, seed, TRAINSET), balanced=True)

    def probe(self, seed: int) -> Samples:
        """The fixed probe set of ``seed``: fresh samples online, else the first training samples."""
        n = self.cfg.data.probe_size
        trainset = self.training_set(seed)
        return self._gaussian(n, generator(self.master, seed, PROBE)) if trainset is None else trainset.head(n)

    def held_out(self, seed: int) -> Samples | None:
        if self.test is not None:
            return self.test
        if self.train is None and self.cfg.data.source == "gaussian" and self.cfg.data.test_size:
            return self._gaussian(self.cfg.data.test_size, generator(self.master, seed, TEST))
        return None

    def stream(self, seed: int, batch_index: int, stream: int = DATA) -> SampleStream:
        """The training samples of ``seed`` at its ``batch_index``-th batch size (``stream``: which draws)."""
        return SampleStream(self, seed, batch_index, stream)


class SampleStream:
    """The samples one (seed, batch size) ensemble trains on, step after step."""

    def __init__(self, data: StudyData, seed: int, batch_index: int, stream: int = DATA):
        self.data, self.trainset = data, data.training_set(seed)
        self.gen = generator(data.master, seed, stream, batch_index)

    def next(self, n: int) -> Samples:
        """``n`` samples: fresh Gaussian ones online, else drawn with replacement from the set."""
        if self.trainset is None:
            return self.data._gaussian(n, self.gen)
        index = torch.randint(0, len(self.trainset), (n,), generator=self.gen)
        return Samples(self.trainset.x[index], self.trainset.y[index])
