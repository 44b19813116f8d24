"""Image data-set loaders: Fashion-MNIST (IDX files), CIFAR-10 (binary version), digits.

Nothing is downloaded: the files are read as distributed from a folder given by
``data_dir`` (the CLI's ``--data-dir``) or the ``THERMOSGD_DATA`` environment variable.
Only raw byte formats are parsed; no user file is ever unpickled (so CIFAR-10's
*python* version is not supported, its *binary* version is).

* Fashion-MNIST: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally ``.gz``;
  in ``DIR``, ``DIR/fashion-mnist``, ``DIR/fashion`` or ``DIR/FashionMNIST/raw``.
* CIFAR-10: ``cifar-10-batches-bin/data_batch_1.bin`` ... ``data_batch_5.bin`` and
  ``test_batch.bin`` (records of 1 label byte + 3072 pixel bytes, channel-major
  32x32 R, G, B planes), in ``DIR/cifar-10-batches-bin`` or ``DIR`` itself.
* digits: scikit-learn's bundled 8x8 handwritten digits (1797 images, real data),
  offered as a small, clearly labeled *substitute* when the files above are absent.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from thermosgd.errors import UsageError
from thermosgd.files import open_regular, read_regular

ENV_VAR = "THERMOSGD_DATA"
FASHION_SOURCE = "https://github.com/zalandoresearch/fashion-mnist"
CIFAR_SOURCE = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz (unpack with tar xzf)"
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR_FOLDER = "cifar-10-batches-bin"
CIFAR_FILES = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)}
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DATASETS = ("fashion-mnist", "cifar10", "digits")
_SUBSTITUTE_HINT = (
    "or use the bundled digits substitute (dataset='digits'; `thermosgd reproduce` uses it when the files are "
    "absent from $THERMOSGD_DATA and no --data-dir is given, or with --substitute-digits)"
)
#: The largest data file read (declared size, checked before reading or decompressing):
#: Fashion-MNIST's largest file holds 47 MB, CIFAR-10's 31 MB.
MAX_IDX_BYTES = 2 << 30
#: Largest image side accepted (pixels); the models build layers from the image size.
MAX_IMAGE_SIDE = 1024
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True)
class ImageData:
    """Images and integer class labels.

    Attributes:
        images: ``(N, channels, height, width)`` raw values (uint8 for the files).
        labels: ``(N,)`` int64 class indices in ``0..len(classes)-1``.
        name: data-set name, e.g. ``"fashion-mnist"``.
        classes: class names, indexed by label.
        scale: multiply ``images`` by this to get values in ``[0, 1]``.
        substitute: True for the digits stand-in (say so in every figure and config).
        files: the files read (absolute paths), for :func:`thermosgd.files.fingerprint`.
    """

    images: np.ndarray
    labels: np.ndarray
    name: str
    classes: tuple[str, ...]
    scale: float
    substitute: bool = False
    files: tuple[str, ...] = ()


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """``data_dir`` if given, else ``$THERMOSGD_DATA`` if set, else None."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (as used by MNIST/Fashion-MNIST), gzipped or not.

    Format: two zero bytes, a type byte (0x08 = unsigned byte, ...), the number of
    dims, then each dim as a big-endian uint32, then the data in C order, big-endian.
    The size the header declares is checked against :data:`MAX_IDX_BYTES` before
    any data is read or decompressed (a gzip bomb never expands).

    Returns:
        Array of shape ``dims`` (native byte order).
    """
    path = Path(path)
    with open_regular(path, "IDX file") as raw_fh:
        gzipped = raw_fh.read(2) == b"\x1f\x8b"
        raw_fh.seek(0)
        size = None if gzipped else os.fstat(raw_fh.fileno()).st_size
        fh = gzip.GzipFile(fileobj=raw_fh) if gzipped else raw_fh
        try:
            return _parse_idx(path, fh, size)
        except (OSError, EOFError, zlib.error) as exc:
            if gzipped:
                raise UsageError(f"{path}: corrupt gzip file ({exc})") from None
            raise


def _parse_idx(path: Path, fh: BinaryIO | gzip.GzipFile, size: int | None) -> np.ndarray:
    """The IDX array in ``fh``; ``size``: the file's length (None when gzipped: known only by reading)."""
    magic = fh.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_TYPES or magic[3] == 0:
        raise UsageError(f"{path}: not an IDX file (bad magic number {magic.hex() or 'empty'})")
    ndim, dtype = magic[3], np.dtype(_IDX_TYPES[magic[2]])
    header = 4 + 4 * ndim
    head = fh.read(4 * ndim)
    if len(head) < 4 * ndim:
        raise UsageError(f"{path}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(head, dtype=">u4"))
    expected = header + math.prod(dims) * dtype.itemsize  # Python ints: no int64 overflow
    if size is not None and size != expected:
        raise UsageError(f"{path}: IDX size mismatch (dims {dims} need {expected} bytes, file has {size})")
    if expected > MAX_IDX_BYTES:
        raise UsageError(
            f"{path}: IDX dims {dims} need {expected} bytes, more than the {MAX_IDX_BYTES >> 30} GiB "
            "a data file may hold here (a damaged header, or a decompression bomb); nothing was decompressed"
        )
    body = fh.read(expected - header + 1)  # one byte more than declared: a longer file is refused
    if len(body) != expected - header:
        has = f"{header + len(body)}" if len(body) < expected - header else "more"
        raise UsageError(f"{path}: IDX size mismatch (dims {dims} need {expected} bytes, file has {has})")
    return np.frombuffer(body, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def _image_size(path: Path, hw: tuple[int, ...]) -> None:
    """Square images of a sensible size: the models derive their layers from the side (28 for Fashion-MNIST)."""
    h, w = hw
    if not (1 <= h <= MAX_IMAGE_SIDE and h == w):
        raise UsageError(
            f"{path}: images are {h}×{w} pixels; expected square images with sides from 1 to {MAX_IMAGE_SIDE} "
            "(Fashion-MNIST's are 28×28)"
        )


def _missing(what: str, expected: str, searched: list[Path] | None, source: str) -> UsageError:
    where = (
        f"searched {', '.join(str(p) for p in searched)}"
        if searched
        else f"no data folder given (pass --data-dir DIR or set {ENV_VAR}=DIR)"
    )
    return UsageError(
        f"{what} files not found: expected {expected}; {where}; get them from {source}; {_SUBSTITUTE_HINT}"
    )


def _find(folder: Path, base: str) -> Path | None:
    for name in (base, base + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def load_fashion_mnist(data_dir: str | os.PathLike | None = None, *, split: str = "train") -> ImageData:
    """Fashion-MNIST from its IDX files (see the module docstring for names and places).

    Args:
        data_dir: folder holding the files (default: ``$THERMOSGD_DATA``).
        split: ``"train"`` (60000 images) or ``"test"`` (10000).

    Returns:
        :class:`ImageData` with images ``(N, 1, 28, 28)`` uint8, 10 classes.
    """
    if split not in FASHION_FILES:
        raise UsageError(f"load_fashion_mnist: split must be 'train' or 'test', got {split!r}")
    image_base, label_base = FASHION_FILES[split]
    expected = f"{image_base}[.gz] and {label_base}[.gz]"
    root = resolve_data_dir(data_dir)
    if root is None:
        raise _missing("Fashion-MNIST", expected, None, FASHION_SOURCE)
    candidates = [root, root / "fashion-mnist", root / "fashion", root / "FashionMNIST" / "raw"]
    for folder in candidates:
        image_path, label_path = _find(folder, image_base), _find(folder, label_base)
        if image_path and label_path:
            break
    else:
        raise _missing("Fashion-MNIST", expected, candidates, FASHION_SOURCE)
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or labels.ndim != 1 or images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise UsageError(
            f"{image_path} / {label_path}: expected uint8 images (N, H, W) and uint8 labels (N,), "
            f"got {images.dtype}{images.shape} and {labels.dtype}{labels.shape}"
        )
    _image_size(image_path, images.shape[1:])
    if len(images) != len(labels):
        raise UsageError(f"{image_path} has {len(images)} images but {label_path} has {len(labels)} labels")
    if labels.size and labels.max() >= len(FASHION_CLASSES):
        raise UsageError(f"{label_path}: label {labels.max()} out of range 0..9")
    return ImageData(
        images=images[:, None],
        labels=labels.astype(np.int64),
        name="fashion-mnist",
        classes=FASHION_CLASSES,
        scale=1 / 255,
        files=tuple(str(p.resolve()) for p in (image_path, label_path)),
    )


def load_cifar10(data_dir: str | os.PathLike | None = None, *, split: str = "train") -> ImageData:
    """CIFAR-10, binary version (see the module docstring for names and places).

    Args:
        data_dir: folder holding ``cifar-10-batches-bin/`` (or its files directly).
        split: ``"train"`` (5 files, 50000 images) or ``"test"`` (10000).

    Returns:
        :class:`ImageData` with images ``(N, 3, 32, 32)`` uint8, 10 classes.
    """
    if split not in CIFAR_FILES:
        raise UsageError(f"load_cifar10: split must be 'train' or 'test', got {split!r}")
    names = CIFAR_FILES[split]
    expected = f"{CIFAR_FOLDER}/{{{','.join(names)}}}" if len(names) > 1 else f"{CIFAR_FOLDER}/{names[0]}"
    root = resolve_data_dir(data_dir)
    if root is None:
        raise _missing("CIFAR-10 (binary version)", expected, None, CIFAR_SOURCE)
    candidates = [root / CIFAR_FOLDER, root]
    folder = next((c for c in candidates if all((c / n).is_file() for n in names)), None)
    if folder is None:
        raise _missing("CIFAR-10 (binary version)", expected, candidates, CIFAR_SOURCE)
    records = []
    for n in names:
        raw = read_regular(folder / n, "CIFAR-10 file", MAX_IDX_BYTES)
        if len(raw) > MAX_IDX_BYTES:
            raise UsageError(f"{folder / n}: larger than {MAX_IDX_BYTES >> 30} GiB; CIFAR-10's files hold 31 MB")
        if len(raw) == 0 or len(raw) % 3073:
            raise UsageError(
                f"{folder / n}: size {len(raw)} is not a multiple of 3073 bytes "
                "(1 label byte + 3072 pixel bytes per image); is it the binary version?"
            )
        records.append(np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3073))
    table = np.concatenate(records)
    labels = table[:, 0].astype(np.int64)
    if labels.max() >= len(CIFAR_CLASSES):
        raise UsageError(f"{folder}: label {labels.max()} out of range 0..9; is it CIFAR-10 (not CIFAR-100)?")
    return ImageData(
        images=table[:, 1:].reshape(-1, 3, 32, 32).copy(),
        labels=labels,
        name="cifar10",
        classes=CIFAR_CLASSES,
        scale=1 / 255,
        files=tuple(str((folder / n).resolve()) for n in names),
    )


def load_digits(*, split: str = "train") -> ImageData:
    """scikit-learn's bundled 8x8 digits: a small real-data *substitute*, not the paper's data.

    Args:
        split: ``"train"`` (first 1437 images, 80%) or ``"test"`` (the other 360).

    Returns:
        :class:`ImageData` with images ``(N, 1, 8, 8)`` uint8 in ``0..16``, 10 classes,
        ``substitute=True``.
    """
    if split not in ("train", "test"):
        raise UsageError(f"load_digits: split must be 'train' or 'test', got {split!r}")
    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError:
        raise UsageError(
            "the digits substitute needs scikit-learn (a dependency of thermosgd): pip install scikit-learn"
        ) from None
    bunch = sk_digits()
    images = bunch.images.astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    cut = 1437
    part = slice(None, cut) if split == "train" else slice(cut, None)
    return ImageData(
        images=images[part],
        labels=labels[part],
        name="digits",
        classes=tuple(str(i) for i in range(10)),
        scale=1 / 16,
        substitute=True,
    )


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *, split: str = "train") -> ImageData:
    """Load ``"fashion-mnist"``, ``"cifar10"`` or ``"digits"`` (the substitute)."""
    if name == "fashion-mnist":
        return load_fashion_mnist(data_dir, split=split)
    if name == "cifar10":
        return load_cifar10(data_dir, split=split)
    if name == "digits":
        return load_digits(split=split)
    raise UsageError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
