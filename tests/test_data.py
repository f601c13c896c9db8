"""gc.data: IDX files, offline data sets, splits, batches and augmentation."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

import graphc as gc
from graphc.data import DataError


# ---- IDX ----

@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, suffix):
    array = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    path = gc.data.write_idx(tmp_path / f"a-idx3{suffix}", array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    back = gc.data.read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_idx_header_is_big_endian(tmp_path):
    path = gc.data.write_idx(tmp_path / "labels-idx1", np.array([1, 2, 258], np.int32))
    raw = path.read_bytes()
    assert raw[:4] == bytes([0, 0, 0x0C, 1])
    assert struct.unpack(">I", raw[4:8]) == (3,)
    assert struct.unpack(">3i", raw[8:]) == (1, 2, 258)


def test_idx_reads_hand_written_mnist_style_file(tmp_path):
    pixels = bytes(range(2 * 2 * 3))
    header = struct.pack(">HBBIII", 0, 0x08, 3, 2, 2, 3)
    path = tmp_path / "images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(header + pixels))
    images = gc.data.read_idx(path)
    assert images.shape == (2, 2, 3) and images.dtype == np.uint8
    assert images[1, 1, 2] == 11


def test_idx_gzip_detected_by_content_not_name(tmp_path):
    path = tmp_path / "plain-name"
    path.write_bytes(gzip.compress(struct.pack(">HBBI", 0, 0x08, 1, 2) + b"\x05\x06"))
    np.testing.assert_array_equal(gc.data.read_idx(path), [5, 6])


@pytest.mark.parametrize("content, message", [
    (b"\x00\x00", "too short"),
    (b"\x01\x02\x08\x01\x00\x00\x00\x01\x00", "two zero bytes"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "unknown IDX type code 0x07"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x01", "declares 3 dimensions"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x04\x01\x02", "need 4 bytes of data, found 2"),
    (b"\x1f\x8b\x08\x00garbage", "corrupt gzip"),
])
def test_idx_bad_files(tmp_path, content, message):
    path = tmp_path / "bad"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        gc.data.read_idx(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, gc.GraphcError)


def test_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such IDX file"):
        gc.data.read_idx(tmp_path / "nothing")


def test_write_idx_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(DataError, match="cannot store dtype int64"):
        gc.data.write_idx(tmp_path / "x", np.zeros(3, np.int64))


# ---- MNIST-style folders ----

def _write_fake_mnist(folder, n_train=12, n_test=4, gz=True, size=28):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for part, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        gc.data.write_idx(folder / f"{part}-images-idx3-ubyte{suffix}", images)
        gc.data.write_idx(folder / f"{part}-labels-idx1-ubyte{suffix}", labels)
    return folder


@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_from_data_dir(tmp_path, gz):
    _write_fake_mnist(tmp_path / "mnist", gz=gz)
    (x_train, y_train), (x_test, y_test) = gc.data.load_mnist("digits-mnist", tmp_path)
    assert x_train.shape == (12, 1, 28, 28) and x_test.shape == (4, 1, 28, 28)
    assert x_train.dtype == np.float32 and 0.0 <= x_train.min() and x_train.max() <= 1.0
    assert y_train.dtype == np.int32 and y_test.shape == (4,)
    raw = gc.data.read_idx(tmp_path / "mnist" / ("train-images-idx3-ubyte" + (".gz" * gz)))
    np.testing.assert_allclose(x_train[:, 0] * 255.0, raw, atol=1e-4)


def test_load_mnist_flat(tmp_path):
    _write_fake_mnist(tmp_path)
    (x_train, _), _ = gc.data.load_mnist("fashion", tmp_path, flat=True)
    assert x_train.shape == (12, 784)


def test_load_mnist_missing_files_says_where_it_looked(tmp_path):
    with pytest.raises(DataError, match="not found; looked in") as info:
        gc.data.load_mnist("digits-mnist", tmp_path)
    assert str(tmp_path) in str(info.value)


def test_load_mnist_unknown_kind():
    with pytest.raises(DataError, match="unknown MNIST kind 'cifar'"):
        gc.data.load_mnist("cifar")


def test_load_mnist_mismatched_labels(tmp_path):
    _write_fake_mnist(tmp_path)
    gc.data.write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(DataError, match="do not match"):
        gc.data.load_mnist("fashion", tmp_path)


def test_load_fashion_mnist_installed():
    try:
        folder = gc.data.find_mnist_dir("fashion")
    except DataError:
        pytest.skip("Fashion-MNIST files absent (apt-get install dataset-fashion-mnist)")
    (x_train, y_train), (x_test, y_test) = gc.data.load_mnist("fashion")
    assert folder.is_dir()
    assert x_train.shape == (60000, 1, 28, 28) and x_test.shape == (10000, 1, 28, 28)
    assert x_train.dtype == np.float32 and x_train.min() == 0.0 and x_train.max() == 1.0
    assert sorted(np.unique(y_train)) == list(range(10)) and y_test.dtype == np.int32


# ---- digits ----

def test_load_digits_shapes_and_ranges():
    x, y = gc.data.load_digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    assert y.shape == (1797,) and y.dtype == np.int32
    assert sorted(np.unique(y)) == list(range(10))
    flat, _ = gc.data.load_digits(flat=True)
    assert flat.shape == (1797, 64)
    np.testing.assert_array_equal(flat, x.reshape(1797, 64))


def test_load_dataset_digits_split():
    split = gc.data.load_dataset("digits", test_fraction=0.2, seed=3)
    assert split.x_train.shape == (1438, 1, 8, 8) and split.x_test.shape == (359, 1, 8, 8)
    assert len(split.y_train) == 1438 and len(split.y_test) == 359
    with pytest.raises(DataError, match="unknown data set 'cifar'"):
        gc.data.load_dataset("cifar")


# ---- splits, shuffling, batches ----

def _toy(n=50):
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    return x, np.arange(n, dtype=np.int32)


def test_train_test_split_is_deterministic_and_disjoint():
    x, y = _toy()
    first = gc.data.train_test_split(x, y, test_fraction=0.2, seed=7)
    again = gc.data.train_test_split(x, y, test_fraction=0.2, seed=7)
    other = gc.data.train_test_split(x, y, test_fraction=0.2, seed=8)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[3], other[3])
    x_train, x_test, y_train, y_test = first
    assert len(x_train) == 40 and len(x_test) == 10
    assert sorted(np.concatenate([y_train, y_test]).tolist()) == list(range(50))
    np.testing.assert_array_equal(x_train[:, 0] / 3, y_train)


def test_validation_split_keras_tail_and_seeded():
    x, y = _toy(10)
    (_, y_train), (_, y_val) = gc.data.validation_split(x, y, 0.2)
    assert y_train.tolist() == list(range(8)) and y_val.tolist() == [8, 9]
    (_, a), (_, b) = gc.data.validation_split(x, y, 0.3, seed=1)
    (_, c), (_, d) = gc.data.validation_split(x, y, 0.3, seed=1)
    assert a.tolist() == c.tolist() and b.tolist() == d.tolist() and len(b) == 3


@pytest.mark.parametrize("fraction", [0.0, 1.0, 0.001])
def test_split_rejects_empty_sides(fraction):
    x, y = _toy(10)
    with pytest.raises(DataError):
        gc.data.train_test_split(x, y, fraction)


def test_split_rejects_length_mismatch():
    x, y = _toy(10)
    with pytest.raises(DataError, match="different lengths"):
        gc.data.train_test_split(x, y[:5])


def test_shuffle_keeps_pairs_and_is_seeded():
    x, y = _toy()
    xs, ys = gc.data.shuffle(x, y, seed=2)
    np.testing.assert_array_equal(xs[:, 0] / 3, ys)
    assert not np.array_equal(ys, y)
    np.testing.assert_array_equal(gc.data.shuffle(x, seed=2), xs)


def test_batches_full_and_partial():
    x, y = _toy(10)
    full = list(gc.data.batches(x, y, batch_size=4, seed=0))
    assert [len(b[0]) for b in full] == [4, 4]
    every = list(gc.data.batches(x, y, batch_size=4, shuffle=False, drop_last=False))
    assert [b[1].tolist() for b in every] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_one_hot_and_normalize():
    np.testing.assert_array_equal(gc.data.one_hot(np.array([2, 0]), 3),
                                  [[0, 0, 1], [1, 0, 0]])
    assert gc.data.one_hot(np.array([[1], [3]])).shape == (2, 1, 4)
    with pytest.raises(DataError, match=r"labels must lie in \[0, 3\)"):
        gc.data.one_hot(np.array([3]), 3)
    with pytest.raises(DataError, match="integer labels"):
        gc.data.one_hot(np.array([0.5]))
    x = np.random.default_rng(0).random((100, 4)).astype(np.float32) * 5 + 2
    z = gc.data.normalize(x)
    assert z.dtype == np.float32 and abs(z.mean()) < 1e-5 and abs(z.std() - 1) < 1e-4
    np.testing.assert_allclose(gc.data.normalize(x, 2.0, 0.5), (x - 2.0) / 0.5, rtol=1e-5)


# ---- augmentation ----

def test_random_shift_shape_and_determinism():
    x, _ = gc.data.load_digits()
    a = gc.data.random_shift(x[:64], max_shift=2, seed=5)
    b = gc.data.random_shift(x[:64], max_shift=2, seed=5)
    c = gc.data.random_shift(x[:64], max_shift=2, seed=6)
    assert a.shape == x[:64].shape and a.dtype == x.dtype
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.sum() <= x[:64].sum() + 1e-3


def test_random_shift_moves_whole_images():
    image = np.zeros((1, 1, 5, 5), np.float32)
    image[0, 0, 2, 2] = 1.0
    images = np.repeat(image, 200, axis=0)
    shifted = gc.data.random_shift(images, max_shift=1, seed=0)
    positions = {tuple(np.argwhere(s[0])[0]) for s in shifted}
    assert positions == {(r, c) for r in (1, 2, 3) for c in (1, 2, 3)}
    np.testing.assert_array_equal(shifted.sum(axis=(1, 2, 3)), 1.0)


def test_random_shift_zero_is_identity_and_bad_input():
    x = np.random.default_rng(0).random((4, 3, 6, 6)).astype(np.float32)
    np.testing.assert_array_equal(gc.data.random_shift(x, 0), x)
    with pytest.raises(DataError, match="batch of images"):
        gc.data.random_shift(x[0, 0], 1)
    with pytest.raises(DataError, match="max_shift must be >= 0"):
        gc.data.random_shift(x, -1)


def test_shifted_batches_reshift_each_pass_and_repeat_by_seed():
    x, y = gc.data.load_digits()
    loader = gc.data.ShiftedBatches(x[:100], y[:100], batch_size=32, max_shift=1, seed=4)
    assert len(loader) == 4
    first, second = list(loader), list(loader)
    assert [len(b[0]) for b in first] == [32, 32, 32, 4]
    assert not np.array_equal(first[0][0], second[0][0])
    again = gc.data.ShiftedBatches(x[:100], y[:100], batch_size=32, max_shift=1, seed=4)
    for (xa, ya), (xb, yb) in zip(first, again):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    labels = np.sort(np.concatenate([b[1] for b in first]))
    np.testing.assert_array_equal(labels, np.sort(y[:100]))


def test_load_mnist_from_env_data_dir(tmp_path, monkeypatch):
    _write_fake_mnist(tmp_path / "digits-mnist", n_train=6, n_test=2)
    monkeypatch.setenv("GRAPHC_DATA_DIR", str(tmp_path))
    (x_train, _), (x_test, _) = gc.data.load_mnist("mnist")
    assert x_train.shape == (6, 1, 28, 28) and x_test.shape == (2, 1, 28, 28)
