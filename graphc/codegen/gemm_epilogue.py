"""Matmuls through the GEMM generator (gemm.py), with the fused epilogue as its store.

A matmul qualifies when each operand is a buffer, or a transpose of a buffer's last two
axes (a layout flag, not a copy), or another strided view of a buffer (read through index
arithmetic), and its batch dims are either all present or absent.
The epilogue (bias, activation, the optimizer update writing a variable in place...) is
the same kernel IR as elsewhere (GemmStores), which the renderer turns into the GEMM's
store statement.
"""
from __future__ import annotations

import numpy as np

from graphc.codegen.built import (STEP_BUFFER, BuiltKernel, GemmBody, GemmStores, node_ops,
                                  traffic)
from graphc.codegen.gather_views import strided_gather
from graphc.codegen.gemm import GemmSpec, fits_32bit, gemm_launch
from graphc.codegen.glsl_gemm import VULKAN, vulkan_gemm_launch
from graphc.codegen.index import flatten, unflatten, var
from graphc.codegen.kernel import Acc, Param
from graphc.codegen.kernel_groups import KernelGroup
from graphc.codegen.loop_kernels import kernel_nodes, stored_buffers
from graphc.codegen.lower import Lowering
from graphc.codegen.lowerings import operand_view
from graphc.codegen.stores import store_targets
from graphc.codegen.width import exprs_fit, fits
from graphc.ir import Tensor

C_TYPES = {"float32": "float", "float64": "double"}
# float16 matmuls: operands stored as half, accumulated in float (CPU template only, no
# gathered operands: codegen/gemm.py)
HALF = "float16"


def gemm_operands(t: Tensor, buffer_of) -> tuple | None:
    """((a_buffer, a_trans, a_stride, a_gather), (b_...)) when the GEMM fits: each operand
    a buffer, a reshape of one or a transpose of its last two axes (layout flags), or any
    other strided view of one, read through index arithmetic (codegen/gather_views.py)."""
    a, b = t.producer.inputs
    half = t.dtype.name == HALF and a.dtype.name == b.dtype.name == HALF
    if (t.dtype.name not in C_TYPES and not half) or t.size == 0 \
            or min(a.shape[-2:] + b.shape[-1:]) < 1:
        return None
    found = []
    for operand, role in ((a, "a"), (b, "b")):
        if operand.shape[:-2] not in ((), t.shape[:-2]):
            return None
        resolved = operand_view(operand, buffer_of.__contains__)
        if resolved is None:
            gathered = None if half else strided_gather(operand, buffer_of.__contains__, role)
            if gathered is None:
                return None
            found.append((gathered[0], False, 0, gathered[1]))
            continue
        rows, cols = operand.shape[-2:]
        stride = rows * cols if operand.shape[:-2] else 0
        found.append((resolved[0], resolved[1], stride, None))
    batch = int(np.prod(t.shape[:-2], dtype=np.int64))
    if not fits_32bit(batch, a.shape[-2], b.shape[-1], a.shape[-1], found[0][2], found[1][2],
                      found[0][3] is not None, found[1][3] is not None):
        return None         # the loop kernel, with 64-bit indices
    return tuple(found)


def build_gemm(group: KernelGroup, buffer_of, nbytes, device_info, operands,
               tune=None) -> BuiltKernel | None:
    """A BuiltKernel for a matmul group through the GEMM generator (None where its epilogue
    would index past 32 bits)."""
    t = group.root
    (a, a_trans, a_stride, a_gather), (b, b_trans, b_stride, b_gather) = operands
    m, k = t.producer.inputs[0].shape[-2:]
    n = t.shape[-1]
    batch = int(np.prod(t.shape[:-2], dtype=np.int64))
    if t.dtype.name == HALF and device_info.type != "cpu":
        return None         # the GPU template has no float16 form: the loop kernel
    spec = GemmSpec(batch, m, n, k, C_TYPES.get(t.dtype.name, "half"), a_trans, b_trans,
                    a_stride, b_stride, a_gather, b_gather)
    if tune is not None:
        device_info = tune(spec, device_info)       # tuned tiles, when known
    out = unflatten(var("gb", batch), t.shape[:-2]) + [var("gi", m), var("gj", n)]
    return built_gemm(group, buffer_of, nbytes, device_info, spec, (a, b), out,
                      f"MM_{batch}_{m}_{n}_{k}")


def built_gemm(group: KernelGroup, buffer_of, nbytes, device_info, spec: GemmSpec, operands,
               out, label: str, columns: tuple[int, int] | None = None) -> BuiltKernel | None:
    """The BuiltKernel of `spec` on the buffers of `operands` (A, B), storing the group's
    values at the root's index `out` (linear forms of gb, gi, gj), named `label`_digest.
    With `columns` (pitch, width), only columns j with j % pitch < width are stored. None
    where the epilogue would index past 32 bits (the loop kernel then indexes in 64)."""
    t = group.root
    low = Lowering(buffer_of)
    low.computing = set(group.stores) - {t}
    epilogue = gemm_stores(group, low, buffer_of, out)
    if epilogue is None:
        return None
    global_size, local_size = vulkan_gemm_launch(spec) if device_info.type == VULKAN else \
        gemm_launch(spec, device_info)
    args = tuple(buffer_of[x] for x in operands) + tuple(low.locals) + \
        ((STEP_BUFFER,) if low.uses_step else ())
    return BuiltKernel(label, GemmBody(spec, device_info, epilogue, columns), args, t.size,
                       node_ops(kernel_nodes(group, low)), spec.flops,
                       *traffic(args, group.stores, nbytes), global_size, local_size,
                       writes=stored_buffers(args, group.stores, buffer_of))


def gemm_stores(group: KernelGroup, low: Lowering, buffer_of, out: list) -> GemmStores | None:
    """The group's values as the GEMM's epilogue: each stored at the output element `out`,
    reading the accumulator; None where an index would pass 32 bits."""
    t = group.root
    low.accumulated = (t, tuple(out), Acc(t.dtype))
    stores, computed = [], []
    for value in group.stores:
        name = low.local(buffer_of[value], value.dtype)
        for part, at, index in store_targets(value, out, t.shape):
            computed.append(low.at(part, at))
            target = flatten(index, value.shape)
            if not fits(target):
                return None
            stores.append((name, target, computed[-1], value.dtype))
    if not exprs_fit(computed):
        return None
    written = {buffer_of[v] for v in group.stores}
    params = tuple(Param(name, low.dtypes[buffer], buffer in written)
                   for buffer, name in low.locals.items())
    return GemmStores(params, tuple(stores), low.uses_step)
