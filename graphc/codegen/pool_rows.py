"""Pooling whose windows tile the input exactly, one work item per row of windows (data).

max_pool2d, avg_pool2d and avg_pool2d_grad are loop ops (codegen/lowerings.py): one work item
per output element, each working out its window with divisions and remainders. When the
windows tile the input exactly (stride = window, no padding, the input a whole number of
windows: LeNet's 2 x 2 pools), a work item can take a whole row of windows instead, its
offsets constants of the template, as the max-pool gradient's tiled template does (one work
item per output spent more time in PoCL's work-group scheduling than in the arithmetic: the
forward max-pool of LeNet's first layer took 0.5-1.1 ms as a loop kernel).

This is the `fast="pool_rows"` builder the lowering registry names for those ops: it returns a
RawBody kernel of template `<op>_rows` when the backend's renderer has that template (OpenCL:
codegen/raw.py), and declines otherwise (another backend, windows that overlap or leave a
rest, an operand computed inline, more than one value stored): the loop kernel then computes
the op as before.
"""
from __future__ import annotations

from graphc.codegen.built import BuiltKernel, RawBody, node_ops, traffic
from graphc.codegen.kernel_groups import KernelGroup
from graphc.codegen.loop_kernels import stored_buffers
from graphc.codegen.lowerings import lowering_of, operand_view
from graphc.codegen.width import beyond_int

TEMPLATE_SUFFIX = "_rows"


def template_of(op: str) -> str:
    """The renderers' template key of op `op`'s rows form."""
    return op + TEMPLATE_SUFFIX


def windows_tile(inner: tuple[int, ...], outer: tuple[int, ...], attrs: dict) -> bool:
    """Do the windows of a pool (attrs kernel, stride, padding) from the (N, C, H, W) shape
    `inner` to the (N, C, OH, OW) shape `outer` cover `inner` exactly, once each?"""
    k, s, p = attrs["kernel"], attrs["stride"], attrs["padding"]
    return tuple(s) == tuple(k) and tuple(p) == (0, 0) and len(inner) == len(outer) == 4 \
        and tuple(inner[:2]) == tuple(outer[:2]) \
        and tuple(inner[2:]) == (outer[2] * k[0], outer[3] * k[1])


def pool_shapes(node, t) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(input image shape, pooled shape) of a pool node computing `t`: a gradient's output
    is the image, its operand the pooled gradient."""
    (operand,) = node.inputs
    if node.op == "avg_pool2d_grad":
        return tuple(t.shape), tuple(operand.shape)
    return tuple(operand.shape), tuple(t.shape)


def build_pool_rows(group: KernelGroup, buffer_of: dict, nbytes: dict,
                    templates: frozenset) -> BuiltKernel | None:
    """The rows kernel of a pool group, or None where it does not apply (see the module)."""
    t = group.root
    node = t.producer
    if template_of(node.op) not in templates or len(group.stores) != 1 \
            or group.stores[0] is not t:
        return None
    image, pooled = pool_shapes(node, t)
    if not windows_tile(image, pooled, node.attrs) or t.size == 0:
        return None
    view = operand_view(node.inputs[0], buffer_of.__contains__)
    if view is None or view[1] or t not in buffer_of:
        return None
    n, c, oh, _ = pooled
    kh, kw = node.attrs["kernel"]
    wide = beyond_int(max(node.inputs[0].size, t.size) + t.size)
    args = (buffer_of[view[0]], buffer_of[t])
    prefix = lowering_of(node.op).prefix
    return BuiltKernel(f"{prefix}_{'_'.join(map(str, t.shape))}",
                       RawBody(template_of(node.op), t, node, wide), args, n * c * oh,
                       node_ops((node,)), kh * kw * (n * c * oh * pooled[3]),
                       *traffic(args, group.stores, nbytes),
                       writes=stored_buffers(args, group.stores, buffer_of))
