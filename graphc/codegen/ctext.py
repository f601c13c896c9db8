"""OpenCL C spelling of types, literals, loads and stores.

float16 is stored as `half` and computed in `float` on every device: `vload_half` and
`vstore_half_rte` are core OpenCL 1.2, so no device needs `cl_khr_fp16` (which PoCL's CPU
device lacks). A float16 result is rounded to half precision where it is computed
(`graphc_half`), as numpy rounds each float16 operation, so devices match the interpreter.
"""
from __future__ import annotations

import math

import numpy as np

C_TYPES = {"float16": "float", "float32": "float", "float64": "double", "int32": "int",
           "int64": "long", "bool": "bool"}
STORAGE_TYPES = {**C_TYPES, "float16": "half", "bool": "uchar"}   # bool is no buffer type
F16 = np.dtype(np.float16)
ROUND_HALF = "graphc_half"
ROUND_HALF_SOURCE = f"""/* x rounded to the nearest half (float16 is computed in float) */
float {ROUND_HALF}(const float x)
{{
    ushort bits;
    vstore_half_rte(x, 0, (__private half*)&bits);
    return vload_half(0, (const __private half*)&bits);
}}
"""


def c_type(dtype, storage: bool = False) -> str:
    """The OpenCL C type computing `dtype` (float for float16), or storing it (`storage`:
    half for float16, uchar for bool)."""
    return (STORAGE_TYPES if storage else C_TYPES)[np.dtype(dtype).name]


def literal(value, dtype) -> str:
    """A C literal of `dtype` (INFINITY/NAN spelled out; float suffixes explicit; float16 as
    the float of its half value)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return "true" if value else "false"
    if dtype.kind in "iu":
        if dtype.itemsize == 8 and int(value) == np.iinfo(np.int64).min:
            return f"({int(value) + 1}L - 1L)"      # C has no literal of the minimum itself
        return f"{int(value)}L" if dtype.itemsize == 8 else str(int(value))
    value = float(np.float16(value)) if dtype == F16 else float(value)
    if math.isnan(value):
        text = "NAN"
    elif math.isinf(value):
        text = "INFINITY" if value > 0 else "-INFINITY"
    else:
        text = repr(value) + ("f" if dtype.itemsize <= 4 else "")
    return text if text.endswith("f") else f"(({c_type(dtype)}){text})"


def load_text(buffer: str, index: str, dtype) -> str:
    """C expression reading element `index` of `buffer` (a computing type: bool, float)."""
    dtype = np.dtype(dtype)
    if dtype == F16:
        return f"vload_half({index}, {buffer})"
    text = f"{buffer}[{index}]"
    return f"({text} != 0)" if dtype.kind == "b" else text


def store_text(buffer: str, index: str, value: str, dtype) -> str:
    """C statement writing `value` to element `index` of `buffer`."""
    dtype = np.dtype(dtype)
    if dtype == F16:
        return f"vstore_half_rte({value}, {index}, {buffer});"
    if dtype.kind == "b":
        value = f"(uchar)({value})"
    return f"{buffer}[{index}] = {value};"


def rounded(text: str, dtype) -> str:
    """`text` rounded to `dtype`'s precision where that is narrower than its C type."""
    return f"{ROUND_HALF}({text})" if np.dtype(dtype) == F16 else text
