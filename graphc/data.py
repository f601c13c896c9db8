"""gc.data: offline data sets, IDX files, splits, batches and augmentation (numpy only).

    (x_train, y_train), (x_test, y_test) = gc.data.load_mnist("fashion")
    x, y = gc.data.load_digits()                       # (1797, 1, 8, 8) float32, int32
    x_tr, x_te, y_tr, y_te = gc.data.train_test_split(x, y, test_fraction=0.2, seed=0)

Nothing here downloads: MNIST-style data comes from IDX files on disk, found in a given
folder or where Debian's `dataset-fashion-mnist` package installs them.
"""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

from graphc.errors import GraphcError

__all__ = ["DataError", "DataTypeError", "OutOfRangeError", "Split", "IDX_DTYPES", "read_idx", "write_idx", "load_digits",
           "load_mnist", "load_dataset", "find_mnist_dir", "normalize", "one_hot", "shuffle",
           "train_test_split", "validation_split", "batches", "random_shift", "ShiftedBatches",
           "DATASETS"]

DATA_DIR_ENV = "GRAPHC_DATA_DIR"
DEBIAN_DATASETS = Path("/usr/share/datasets")
DATASETS = ("digits", "fashion-mnist", "mnist")

# IDX type codes (third byte of the magic number) and their big-endian numpy dtypes.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_KINDS = {
    "fashion": ("fashion-mnist", "fashion_mnist", "fashion"),
    "digits-mnist": ("mnist", "digits-mnist", "mnist-digits"),
}
_KIND_ALIASES = {"fashion-mnist": "fashion", "fashion_mnist": "fashion", "mnist": "digits-mnist",
                 "digits": "digits-mnist"}


class DataError(GraphcError):
    """A data file is missing or malformed, or data arguments do not fit together."""


class DataTypeError(DataError, TypeError):
    """Data of a kind fit / evaluate / predict do not take (the message says what they do)."""


class OutOfRangeError(DataError, ValueError):
    """A class label or an embedding id outside the range its loss or layer takes."""


class Split(NamedTuple):
    """A train/test split; arrays are float32 images (N, C, H, W) or (N, D) and int32 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


# ---- IDX files ----

def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with gzip's magic number."""
    raw = Path(path).read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: corrupt gzip data ({error})") from None


def _parse_idx_header(data: bytes, path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, dims, offset of the data) from an IDX header."""
    if len(data) < 4:
        raise DataError(f"{path}: too short for an IDX file ({len(data)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise DataError(f"{path}: not an IDX file (magic number {data[:4].hex()} "
                        "does not start with two zero bytes)")
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataError(f"{path}: unknown IDX type code 0x{code:02X} (known: {known})")
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise DataError(f"{path}: header declares {ndim} dimensions but the file ends "
                        f"after {len(data)} bytes")
    dims = struct.unpack(f">{ndim}I", data[4:offset])
    return IDX_DTYPES[code], tuple(int(d) for d in dims), offset


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (raw or gzipped) as a native-endian numpy array of its declared shape."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such IDX file")
    data = _read_bytes(path)
    dtype, dims, offset = _parse_idx_header(data, path)
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) - offset != expected:
        raise DataError(f"{path}: dimensions {dims} of {dtype.newbyteorder('=').name} need "
                        f"{expected} bytes of data, found {len(data) - offset}")
    array = np.frombuffer(data, dtype=dtype, offset=offset).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write `array` as an IDX file; gzipped when `compress` (default: the name ends in .gz)."""
    path = Path(path)
    array = np.asarray(array)
    code = _IDX_CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise DataError(f"IDX cannot store dtype {array.dtype}")
    if array.ndim > 255:
        raise DataError(f"IDX cannot store {array.ndim} dimensions")
    header = struct.pack(f">HBB{array.ndim}I", 0, code, array.ndim, *array.shape)
    payload = header + array.astype(IDX_DTYPES[code]).tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)
    return path


# ---- data sets ----

def load_digits(flat: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits: float32 in [0, 1], (N, 1, 8, 8) or (N, 64); int32 labels."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise DataError("load_digits needs scikit-learn: pip install graphc[data]") from None
    digits = sklearn_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    return (x if flat else x.reshape(-1, 1, 8, 8)), y


def _canonical_kind(kind: str) -> str:
    kind = _KIND_ALIASES.get(kind, kind)
    if kind not in MNIST_KINDS:
        raise DataError(f"unknown MNIST kind {kind!r}; expected 'fashion' or 'digits-mnist'")
    return kind


def _find_file(folder: Path, stem: str) -> Path | None:
    """`stem` in `folder`, gzipped or raw, also under the original MNIST's dotted name."""
    dotted = stem.replace("-idx", ".idx")
    for name in (stem + ".gz", stem, dotted + ".gz", dotted):
        if (folder / name).is_file():
            return folder / name
    return None


def _has_mnist_files(folder: Path) -> bool:
    stems = [stem for pair in MNIST_FILES.values() for stem in pair]
    return all(_find_file(folder, stem) for stem in stems)


def _candidate_dirs(kind: str, data_dir: str | os.PathLike | None) -> list[Path]:
    """Folders to look in, in order: data_dir, $GRAPHC_DATA_DIR (each also with the kind's
    subfolder names), then Debian's /usr/share/datasets/<kind>."""
    roots = [Path(d) for d in (data_dir, os.environ.get(DATA_DIR_ENV)) if d]
    subdirs = MNIST_KINDS[kind]
    found = [folder for root in roots for folder in [root, *(root / s for s in subdirs)]]
    return found + [DEBIAN_DATASETS / subdirs[0]]


def find_mnist_dir(kind: str = "fashion", data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding the four IDX files of `kind`, or a DataError saying where we looked."""
    kind = _canonical_kind(kind)
    candidates = _candidate_dirs(kind, data_dir)
    for folder in candidates:
        if _has_mnist_files(folder):
            return folder
    looked = ", ".join(str(c) for c in candidates)
    hint = f"pass data_dir (--data-dir) or set ${DATA_DIR_ENV}"
    if kind == "fashion":
        hint = f"apt-get install dataset-fashion-mnist, or {hint}"
    raise DataError(f"{kind} IDX files ({', '.join(MNIST_FILES['train'])}, ...) not found; "
                    f"looked in {looked}; {hint}")


def _load_mnist_part(folder: Path, part: str, flat: bool) -> tuple[np.ndarray, np.ndarray]:
    images_stem, labels_stem = MNIST_FILES[part]
    images = read_idx(_find_file(folder, images_stem))
    labels = read_idx(_find_file(folder, labels_stem))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{folder}: {part} images {images.shape} and labels {labels.shape} "
                        "do not match (expected (N, H, W) and (N,))")
    x = images.astype(np.float32) / 255.0
    x = x.reshape(len(x), -1) if flat else x[:, None]
    return x, labels.astype(np.int32)


def load_mnist(kind: str = "fashion", data_dir: str | os.PathLike | None = None,
               flat: bool = False) -> tuple[tuple[np.ndarray, np.ndarray],
                                            tuple[np.ndarray, np.ndarray]]:
    """((x_train, y_train), (x_test, y_test)) of MNIST or Fashion-MNIST, as in Keras.

    Images are float32 in [0, 1] of shape (N, 1, 28, 28) (or (N, 784) with flat=True),
    labels int32. Files come from `data_dir`, $GRAPHC_DATA_DIR, or (Fashion-MNIST) Debian's
    /usr/share/datasets/fashion-mnist; nothing is downloaded.
    """
    folder = find_mnist_dir(kind, data_dir)
    return _load_mnist_part(folder, "train", flat), _load_mnist_part(folder, "test", flat)


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, flat: bool = False,
                 test_fraction: float = 0.2, seed: int = 0) -> Split:
    """A named data set as a Split: 'digits' (split here, seeded), 'fashion-mnist', 'mnist'."""
    if name == "digits":
        x, y = load_digits(flat=flat)
        x_train, x_test, y_train, y_test = train_test_split(x, y, test_fraction, seed)
        return Split(x_train, y_train, x_test, y_test)
    if name in ("fashion-mnist", "mnist"):
        (x_train, y_train), (x_test, y_test) = load_mnist(name, data_dir, flat=flat)
        return Split(x_train, y_train, x_test, y_test)
    raise DataError(f"unknown data set {name!r}; expected one of {', '.join(DATASETS)}")


# ---- preprocessing ----

def normalize(x: np.ndarray, mean: float | np.ndarray | None = None,
              std: float | np.ndarray | None = None, eps: float = 1e-7) -> np.ndarray:
    """(x - mean) / std as float32; mean and std default to x's own (pass the train set's)."""
    x = np.asarray(x, dtype=np.float32)
    mean = x.mean() if mean is None else mean
    std = x.std() if std is None else std
    return ((x - mean) / (np.asarray(std) + eps)).astype(np.float32)


def one_hot(labels: np.ndarray, num_classes: int | None = None,
            dtype: np.dtype = np.float32) -> np.ndarray:
    """Integer labels (any shape) to one-hot rows along a new last axis."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"one_hot needs integer labels, got {labels.dtype}")
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"labels must lie in [0, {num_classes}), got "
                        f"[{labels.min()}, {labels.max()}]")
    return np.eye(num_classes, dtype=dtype)[labels]


def _check_lengths(*arrays: np.ndarray | None) -> int:
    lengths = {len(a) for a in arrays if a is not None}
    if len(lengths) != 1:
        raise DataError(f"arrays have different lengths: {sorted(lengths)}")
    return lengths.pop()


def shuffle(x: np.ndarray, y: np.ndarray | None = None, seed: int = 0):
    """x (and y) in the same seeded random order."""
    order = np.random.default_rng(seed).permutation(_check_lengths(x, y))
    return x[order] if y is None else (x[order], y[order])


def _split_sizes(n: int, fraction: float) -> int:
    if not 0.0 < fraction < 1.0:
        raise DataError(f"split fraction must lie in (0, 1), got {fraction}")
    held_out = int(round(n * fraction))
    if held_out in (0, n):
        raise DataError(f"a fraction {fraction} of {n} examples leaves one side empty")
    return held_out


def train_test_split(x: np.ndarray, y: np.ndarray, test_fraction: float = 0.2, seed: int = 0):
    """Seeded shuffle then split: (x_train, x_test, y_train, y_test), as scikit-learn orders."""
    n = _check_lengths(x, y)
    n_test = _split_sizes(n, test_fraction)
    order = np.random.default_rng(seed).permutation(n)
    train, test = order[n_test:], order[:n_test]
    return x[train], x[test], y[train], y[test]


def validation_split(x: np.ndarray, y: np.ndarray, fraction: float = 0.1,
                     seed: int | None = None):
    """(x_train, y_train), (x_val, y_val): the last `fraction` as Keras does, or seeded random."""
    n = _check_lengths(x, y)
    n_val = _split_sizes(n, fraction)
    order = np.arange(n) if seed is None else np.random.default_rng(seed).permutation(n)
    train, val = order[:n - n_val], order[n - n_val:]
    return (x[train], y[train]), (x[val], y[val])


def batches(x: np.ndarray, y: np.ndarray | None = None, batch_size: int = 32,
            shuffle: bool = True, seed: int = 0, drop_last: bool = True) -> Iterator:
    """Mini-batches of x (and y), reshuffled by `seed`; drop_last keeps every batch full."""
    n = _check_lengths(x, y)
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        index = order[start:start + batch_size]
        yield x[index] if y is None else (x[index], y[index])


# ---- augmentation ----

def random_shift(x: np.ndarray, max_shift: int = 2, seed: int = 0) -> np.ndarray:
    """Each image moved by a seeded random whole-pixel offset in [-max_shift, max_shift]^2.

    Works on (..., H, W) batches (the first axis indexes images); pixels shifted in are zero.
    """
    x = np.asarray(x)
    if x.ndim < 3:
        raise DataError(f"random_shift needs a batch of images (N, ..., H, W), got {x.shape}")
    if max_shift < 0:
        raise DataError(f"max_shift must be >= 0, got {max_shift}")
    offsets = np.random.default_rng(seed).integers(-max_shift, max_shift + 1, size=(len(x), 2))
    m = max_shift
    padded = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(m, m), (m, m)])
    height, width = x.shape[-2:]
    out = np.empty_like(x)
    for dy, dx in {tuple(o) for o in offsets.tolist()}:
        chosen = np.flatnonzero((offsets[:, 0] == dy) & (offsets[:, 1] == dx))
        top, left = m - dy, m - dx
        out[chosen] = padded[chosen, ..., top:top + height, left:left + width]
    return out


class ShiftedBatches:
    """Re-iterable (x, y) batches, reshuffled and randomly shifted anew at each pass.

    Give it to Model.fit in place of arrays (`fit(ShiftedBatches(x, y, 32, 2))`): every
    epoch then sees other offsets. Pass k uses seed + k, so runs repeat exactly.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int = 32, max_shift: int = 2,
                 seed: int = 0):
        _check_lengths(x, y)
        self.x, self.y, self.batch_size = x, y, int(batch_size)
        self.max_shift, self.seed, self.passes = int(max_shift), int(seed), 0

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        seed = self.seed + self.passes
        self.passes += 1
        shifted = random_shift(self.x, self.max_shift, seed)
        return batches(shifted, self.y, self.batch_size, seed=seed, drop_last=False)
