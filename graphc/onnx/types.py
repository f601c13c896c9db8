"""ONNX element types and the graphc dtype each is computed in.

graphc computes in float16/32/64, int32/int64 and bool. The narrow integer types ONNX also
has are computed widened (int8, int16, uint8, uint16 and the 4- and 2-bit ones in int32;
uint32 in int64), and the storage-only float formats (bfloat16, float8, float4) in float32:
every value of theirs is exact in the wider type. Values are converted back to their ONNX
type on the host when they leave the model (rounding to nearest even, as ONNX's Cast), so a
model reads and returns its own types; a Cast *to* a storage-only type must therefore be a
graph output (rounding inside the graph is refused rather than skipped). uint64 (values
past int64), strings and complex are refused at import.
"""
from __future__ import annotations

import numpy as np

from graphc import dtypes
from graphc.onnx.errors import UnsupportedError

# ONNX TensorProto.DataType numbers (stable across versions)
FLOAT, UINT8, INT8, UINT16, INT16, INT32, INT64, STRING, BOOL = 1, 2, 3, 4, 5, 6, 7, 8, 9
FLOAT16, DOUBLE, UINT32, UINT64 = 10, 11, 12, 13
BFLOAT16, FLOAT8E4M3FN, FLOAT8E4M3FNUZ, FLOAT8E5M2, FLOAT8E5M2FNUZ = 16, 17, 18, 19, 20
UINT4, INT4, FLOAT4E2M1, UINT2, INT2 = 21, 22, 23, 25, 26
STORAGE_FLOATS = (BFLOAT16, FLOAT8E4M3FN, FLOAT8E4M3FNUZ, FLOAT8E5M2, FLOAT8E5M2FNUZ,
                  FLOAT4E2M1)
STORAGE_INTS = (UINT4, INT4, UINT2, INT2)

NUMPY = {FLOAT: np.float32, UINT8: np.uint8, INT8: np.int8, UINT16: np.uint16,
         INT16: np.int16, INT32: np.int32, INT64: np.int64, BOOL: np.bool_,
         FLOAT16: np.float16, DOUBLE: np.float64, UINT32: np.uint32}
COMPUTE = {FLOAT: dtypes.float32, DOUBLE: dtypes.float64, FLOAT16: dtypes.float16,
           INT32: dtypes.int32, INT64: dtypes.int64, BOOL: dtypes.bool_,
           INT8: dtypes.int32, INT16: dtypes.int32, UINT8: dtypes.int32, UINT16: dtypes.int32,
           UINT32: dtypes.int64}
COMPUTE.update({t: dtypes.float32 for t in STORAGE_FLOATS})
COMPUTE.update({t: dtypes.int32 for t in STORAGE_INTS})


def type_name(elem_type: int) -> str:
    try:
        import onnx
        return onnx.TensorProto.DataType.Name(elem_type)
    except Exception:           # an unknown number, or onnx without the name table
        return f"type {elem_type}"


def numpy_dtype(elem_type: int) -> np.dtype:
    """The numpy dtype of an ONNX element type graphc supports (ml_dtypes' for the
    storage-only formats)."""
    _check(elem_type)
    if elem_type in NUMPY:
        return np.dtype(NUMPY[elem_type])
    from onnx import helper
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))


def is_storage_only(elem_type: int | None) -> bool:
    """A type graphc computes widened and rounds to only when a value leaves the model."""
    return elem_type in STORAGE_FLOATS or elem_type in STORAGE_INTS


def finite_max(elem_type: int) -> float:
    """The largest finite value of a storage-only float type."""
    import ml_dtypes
    return float(ml_dtypes.finfo(numpy_dtype(elem_type)).max)


def integer_range(elem_type: int) -> tuple[int, int]:
    """[min, max] of an integer type (its ONNX width, not the widened one)."""
    limits = {UINT4: (0, 15), INT4: (-8, 7), UINT2: (0, 3), INT2: (-2, 1)}
    if elem_type in limits:
        return limits[elem_type]
    info = np.iinfo(numpy_dtype(elem_type))
    return int(info.min), int(info.max)


def compute_dtype(elem_type: int) -> np.dtype:
    """The graphc dtype an ONNX element type is computed in."""
    _check(elem_type)
    return COMPUTE[elem_type]


def compute_dtype_of_array(array: np.ndarray) -> np.dtype:
    """The graphc dtype a numpy array of an ONNX-supported dtype is computed in."""
    for elem_type in COMPUTE:
        if numpy_dtype(elem_type) == array.dtype:
            return COMPUTE[elem_type]
    raise UnsupportedError(f"dtype {array.dtype} has no graphc counterpart")


def elem_type_of_array(array: np.ndarray) -> int | None:
    for elem_type in COMPUTE:
        if numpy_dtype(elem_type) == array.dtype:
            return elem_type
    return None


def _check(elem_type: int) -> None:
    if elem_type not in COMPUTE:
        raise UnsupportedError(f"element type {type_name(elem_type)} is not supported (graphc"
                               f" computes in float16/32/64, int8-64, uint8-32, bool and the "
                               f"storage-only bfloat16, float8, float4, int4 and int2)")
