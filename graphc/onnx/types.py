"""ONNX element types and the graphc dtype each is computed in.

graphc computes in float16/32/64, int32/int64 and bool. The narrow integer types ONNX also
has are computed widened (int8, int16, uint8, uint16 in int32; uint32 in int64) and
converted back to their ONNX type on the host when they leave the model, so the values a
model reads and returns keep their types. Types with no exact graphc counterpart (bfloat16,
the float8 and 4-bit formats, uint64, strings, complex) are refused at import.
"""
from __future__ import annotations

import numpy as np

from graphc import dtypes
from graphc.onnx.errors import UnsupportedError

# ONNX TensorProto.DataType numbers (stable across versions)
FLOAT, UINT8, INT8, UINT16, INT16, INT32, INT64, STRING, BOOL = 1, 2, 3, 4, 5, 6, 7, 8, 9
FLOAT16, DOUBLE, UINT32, UINT64 = 10, 11, 12, 13

NUMPY = {FLOAT: np.float32, UINT8: np.uint8, INT8: np.int8, UINT16: np.uint16,
         INT16: np.int16, INT32: np.int32, INT64: np.int64, BOOL: np.bool_,
         FLOAT16: np.float16, DOUBLE: np.float64, UINT32: np.uint32}
COMPUTE = {FLOAT: dtypes.float32, DOUBLE: dtypes.float64, FLOAT16: dtypes.float16,
           INT32: dtypes.int32, INT64: dtypes.int64, BOOL: dtypes.bool_,
           INT8: dtypes.int32, INT16: dtypes.int32, UINT8: dtypes.int32, UINT16: dtypes.int32,
           UINT32: dtypes.int64}


def type_name(elem_type: int) -> str:
    try:
        import onnx
        return onnx.TensorProto.DataType.Name(elem_type)
    except Exception:           # an unknown number, or onnx without the name table
        return f"type {elem_type}"


def numpy_dtype(elem_type: int) -> np.dtype:
    """The numpy dtype of an ONNX element type graphc supports."""
    _check(elem_type)
    return np.dtype(NUMPY[elem_type])


def compute_dtype(elem_type: int) -> np.dtype:
    """The graphc dtype an ONNX element type is computed in."""
    _check(elem_type)
    return COMPUTE[elem_type]


def compute_dtype_of_array(array: np.ndarray) -> np.dtype:
    """The graphc dtype a numpy array of an ONNX-supported dtype is computed in."""
    for elem_type, np_type in NUMPY.items():
        if np.dtype(np_type) == array.dtype:
            return COMPUTE[elem_type]
    raise UnsupportedError(f"dtype {array.dtype} has no graphc counterpart")


def _check(elem_type: int) -> None:
    if elem_type not in COMPUTE:
        raise UnsupportedError(f"element type {type_name(elem_type)} is not supported (graphc"
                               f" computes in float16/32/64, int8-64, uint8-32 and bool)")
