"""Data loaders on small files built here in the exact distributed formats."""

import gzip
import struct

import numpy as np
import pytest

from thermosgd.data import load_cifar10, load_dataset, load_digits, load_fashion_mnist, read_idx
from thermosgd.errors import UsageError


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX: 0x0000, type 0x08 (ubyte), ndim, big-endian uint32 dims, data."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fashion(folder, n=12, split="train", gz=False, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    prefix = "train" if split == "train" else "t10k"
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
        data = idx_bytes(arr)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return images, labels


def write_cifar(root, per_file=3, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = [], []
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        lab = rng.integers(0, 10, per_file, dtype=np.uint8)
        img = rng.integers(0, 256, (per_file, 3, 32, 32), dtype=np.uint8)
        records = np.concatenate([lab[:, None], img.reshape(per_file, -1)], axis=1)
        (folder / name).write_bytes(records.tobytes())
        if name != "test_batch.bin":
            images.append(img)
            labels.append(lab)
    return np.concatenate(images), np.concatenate(labels)


def test_idx_header_is_the_documented_one():
    raw = idx_bytes(np.zeros((2, 28, 28)))
    assert raw[:4] == bytes.fromhex("00000803") and raw[4:8] == bytes.fromhex("00000002")
    assert idx_bytes(np.zeros(5))[:4] == bytes.fromhex("00000801")


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("split", ["train", "test"])
def test_fashion_mnist_round_trip(tmp_path, gz, split):
    images, labels = write_fashion(tmp_path, split=split, gz=gz)
    data = load_fashion_mnist(tmp_path, split=split)
    assert data.images.shape == (12, 1, 28, 28) and data.images.dtype == np.uint8
    np.testing.assert_array_equal(data.images[:, 0], images)
    np.testing.assert_array_equal(data.labels, labels.astype(np.int64))
    assert data.name == "fashion-mnist" and data.scale == 1 / 255 and not data.substitute


def test_fashion_mnist_in_a_subfolder_and_from_the_environment(tmp_path, monkeypatch):
    images, _ = write_fashion(tmp_path / "fashion-mnist", gz=True)
    monkeypatch.setenv("THERMOSGD_DATA", str(tmp_path))
    np.testing.assert_array_equal(load_dataset("fashion-mnist").images[:, 0], images)


def test_cifar10_binary_round_trip(tmp_path):
    images, labels = write_cifar(tmp_path)
    data = load_cifar10(tmp_path)
    assert data.images.shape == (15, 3, 32, 32)
    np.testing.assert_array_equal(data.images, images)
    np.testing.assert_array_equal(data.labels, labels.astype(np.int64))
    assert load_cifar10(tmp_path, split="test").images.shape == (3, 3, 32, 32)
    # the folder itself may also be given
    assert len(load_cifar10(tmp_path / "cifar-10-batches-bin").labels) == 15


def test_missing_files_name_what_is_expected(tmp_path, monkeypatch):
    monkeypatch.delenv("THERMOSGD_DATA", raising=False)
    with pytest.raises(UsageError) as err:
        load_fashion_mnist(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg
    for part in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        str(tmp_path),
        "zalandoresearch/fashion-mnist",
        "digits",
    ):
        assert part in msg
    with pytest.raises(UsageError, match=r"data_batch_1.bin.*cifar-10-binary.tar.gz.*digits"):
        load_cifar10(tmp_path)
    with pytest.raises(UsageError, match=r"no data folder given \(pass --data-dir DIR or set THERMOSGD_DATA"):
        load_cifar10(None)


def test_malformed_files(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x00\x00\x07\x01\x00\x00\x00\x01x")
    with pytest.raises(UsageError, match="not an IDX file"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(idx_bytes(np.zeros((3, 4)))[:-1])
    with pytest.raises(UsageError, match="size mismatch"):
        read_idx(short)
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-bin" / "data_batch_2.bin").write_bytes(b"\x00" * 3000)
    with pytest.raises(UsageError, match="not a multiple of 3073"):
        load_cifar10(tmp_path)


def test_mismatched_image_and_label_counts(tmp_path):
    write_fashion(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(5)))
    with pytest.raises(UsageError, match="12 images but .* 5 labels"):
        load_fashion_mnist(tmp_path)


def test_digits_substitute_is_labeled():
    train, test = load_digits(), load_digits(split="test")
    assert train.images.shape == (1437, 1, 8, 8) and len(test.labels) == 360
    assert train.substitute and train.name == "digits" and train.images.max() <= 16
    with pytest.raises(UsageError, match="unknown data set"):
        load_dataset("mnist")


def test_loaded_files_are_named_for_their_fingerprint(tmp_path):
    """The loaders name the files they read; their fingerprint is the SHA-256 of each file's bytes
    (twin: hashlib on the bytes), and it changes when a file's numbers do."""
    import hashlib

    from thermosgd.files import changed_inputs, fingerprint

    write_fashion(tmp_path, gz=True)
    data = load_fashion_mnist(tmp_path)
    assert sorted(p.split("/")[-1] for p in data.files) == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    before = fingerprint(data.files)
    assert before == {p: hashlib.sha256(open(p, "rb").read()).hexdigest() for p in data.files}
    write_fashion(tmp_path, gz=True, seed=1)
    assert "train-images-idx3-ubyte.gz changed" in changed_inputs(before, fingerprint(data.files))
    write_cifar(tmp_path)
    assert len(load_cifar10(tmp_path).files) == 5


def test_a_gzip_bomb_is_refused_before_it_expands(tmp_path):
    """The header's declared size is checked before decompressing; a stream longer than declared is refused."""
    header = bytes([0, 0, 8, 3]) + struct.pack(">3I", 3_000_000, 28, 28)  # 2.35 GB declared
    (tmp_path / "bomb.gz").write_bytes(gzip.compress(header + bytes(10**6)))
    with pytest.raises(UsageError, match="nothing was decompressed"):
        read_idx(tmp_path / "bomb.gz")
    longer = bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + bytes(10**6)  # declares 10 bytes, holds 1 MB
    (tmp_path / "long.gz").write_bytes(gzip.compress(longer))
    with pytest.raises(UsageError, match="has more"):
        read_idx(tmp_path / "long.gz")
