"""What a device can compute, checked before any program is built.

double needs `cl_khr_fp64` (rusticl's llvmpipe has none): a graph computing in float64 on
such a device is a DTypeError naming the device, the first op that computes in float64 and
the user's line, instead of a build log. float16 needs nothing: it is stored as half and
computed in float on every device (codegen/ctext.py).
"""
from __future__ import annotations

import numpy as np

from graphc.builder import op_error_text
from graphc.errors import DTypeError
from graphc.ir import Graph

F64 = np.dtype(np.float64)


# GLSL's exp, log, pow, sin, cos, tanh (and graphc's erf helper) take float only: these ops
# in float64 have no Vulkan spelling (sqrt, arithmetic and comparisons do).
GLSL_FLOAT_ONLY = frozenset({"exp", "log", "power", "sin", "cos", "tanh", "sigmoid", "erf",
                             "random_normal"})


def check_device_dtypes(graph: Graph, device) -> None:
    """Raise DTypeError where `graph` computes in a dtype `device` cannot."""
    if getattr(device, "backend", "opencl") == "vulkan":
        _check_vulkan(graph, device)
    if getattr(device, "fp64", True):
        return
    for node in graph.nodes:
        if any(v.dtype == F64 for v in node.inputs + node.outputs):
            raise DTypeError(op_error_text(
                node.op, node.inputs, {}, node.site,
                f"computes in float64, which {_name(device)} does not support (it has no "
                f"cl_khr_fp64); use float32 there, or a device with double precision"))


def _name(device) -> str:
    describe = getattr(device, "describe", None)
    return f"device {describe()}" if callable(describe) else f"device {device.name!r}"


def _check_vulkan(graph: Graph, device) -> None:
    """What a Vulkan device or GLSL lacks: double (shaderFloat64), 64-bit integers
    (shaderInt64), float16 and bool buffers (16- and 8-bit storage), and float64 in the ops
    GLSL computes in float only."""
    lacks = {F64: None if device.fp64 else "shaderFloat64",
             np.dtype(np.int64): None if device.int64 else "shaderInt64",
             np.dtype(np.float16): None if device.storage16 else "storageBuffer16BitAccess",
             np.dtype(np.bool_): None if device.storage8 else "storageBuffer8BitAccess"}
    for node in graph.nodes:
        for v in node.inputs + node.outputs:
            feature = lacks.get(v.dtype)
            if feature is not None:
                raise DTypeError(op_error_text(
                    node.op, node.inputs, {}, node.site,
                    f"computes in {v.dtype.name}, which {_name(device)} does not support "
                    f"(it has no {feature})"))
        if node.op in GLSL_FLOAT_ONLY and any(v.dtype == F64 for v in node.outputs):
            raise DTypeError(op_error_text(
                node.op, node.inputs, {}, node.site,
                f"computes {node.op} in float64, which the Vulkan backend cannot on "
                f"{_name(device)}: GLSL has {node.op} in float32 only; use float32 there, "
                f"or an OpenCL device"))
