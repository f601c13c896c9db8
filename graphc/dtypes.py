"""The dtypes graphc supports, their short names, and the promotion rule."""
from __future__ import annotations

import numpy as np

from graphc.errors import DTypeError

float16 = np.dtype(np.float16)
float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int32 = np.dtype(np.int32)
int64 = np.dtype(np.int64)
bool_ = np.dtype(np.bool_)

# Order of the promotion lattice: a binary op takes the later of its operands' dtypes.
# Unlike numpy, an integer never widens a float (int32 + float32 is float32), as in
# PyTorch and JAX: on a GPU a silent float64 is a bug, not a feature.
# Scalars follow NEP 50 (numpy 2) and JAX: a Python bool/int/float is weak (it takes the
# dtype of the tensors beside it), a numpy scalar (np.float64(1) / 3) is strong: it keeps its
# dtype and promotes like an array of that dtype.
SUPPORTED = (bool_, int32, int64, float16, float32, float64)
SHORT_NAMES = {bool_: "bool", int32: "i32", int64: "i64",
               float16: "f16", float32: "f32", float64: "f64"}
FROM_SHORT = {short: dtype for dtype, short in SHORT_NAMES.items()}
DEFAULT_FLOAT = float32
DEFAULT_INT = int32


def as_dtype(spec) -> np.dtype:
    """Turn a numpy dtype, a type, a name or a short name ('f32') into a supported dtype."""
    if isinstance(spec, str) and spec in FROM_SHORT:
        return FROM_SHORT[spec]
    try:
        dtype = np.dtype(spec)
    except TypeError as exc:
        raise DTypeError(f"not a dtype: {spec!r}") from exc
    if dtype not in SHORT_NAMES:
        names = ", ".join(d.name for d in SUPPORTED)
        raise DTypeError(f"dtype {dtype.name} is not supported (supported: {names})")
    return dtype


def short_name(dtype: np.dtype) -> str:
    """'f32' for float32 and so on."""
    return SHORT_NAMES[np.dtype(dtype)]


def is_float(dtype: np.dtype) -> bool:
    """True for float16/32/64."""
    return np.dtype(dtype).kind == "f"


def is_int(dtype: np.dtype) -> bool:
    """True for int32/int64."""
    return np.dtype(dtype).kind in "iu"


def is_bool(dtype: np.dtype) -> bool:
    """True for bool."""
    return np.dtype(dtype) == bool_


def promote(*dtypes: np.dtype) -> np.dtype:
    """The common dtype of tensor operands, by the lattice bool < int32 < int64 < f16 < f32 < f64."""
    return max((np.dtype(d) for d in dtypes), key=SUPPORTED.index)


def is_weak_scalar(value) -> bool:
    """A Python bool, int or float (not a numpy scalar: np.float64 subclasses float)."""
    return isinstance(value, (bool, int, float)) and not isinstance(value, np.generic)


def weak_scalar_dtype(value, other: np.dtype) -> np.dtype:
    """The dtype a Python scalar takes next to a tensor of dtype `other` (it never widens it)."""
    if isinstance(value, (bool, np.bool_)):
        return other
    if isinstance(value, (int, np.integer)):
        return other if not is_bool(other) else DEFAULT_INT
    if isinstance(value, (float, np.floating)):
        return other if is_float(other) else DEFAULT_FLOAT
    raise DTypeError(f"cannot use {type(value).__name__} {value!r} as a tensor")


def default_dtype_of(value) -> np.dtype:
    """The dtype of a Python scalar or numpy array used alone as a constant: a numpy scalar
    or array keeps its own; Python numbers (and lists of them) take the defaults."""
    if isinstance(value, np.generic):
        return as_dtype(value.dtype)
    if isinstance(value, bool):
        return bool_
    if isinstance(value, int):
        return DEFAULT_INT
    if isinstance(value, float):
        return DEFAULT_FLOAT
    array = np.asarray(value)
    if array.dtype == np.float64 and not isinstance(value, np.ndarray):
        return DEFAULT_FLOAT                    # a Python list of floats
    if array.dtype.kind in "iu" and not isinstance(value, np.ndarray):
        return DEFAULT_INT
    return as_dtype(array.dtype)
