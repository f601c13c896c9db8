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


def check_device_dtypes(graph: Graph, device) -> None:
    """Raise DTypeError where `graph` computes in a dtype `device` cannot."""
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
