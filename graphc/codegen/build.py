"""From scheduled kernel groups to OpenCL source and launches (the runtime's plain data)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np


from graphc.codegen.index import flatten, floordiv, unflatten, var
from graphc.codegen.kernel import (Acc, Kernel, Load, Param, Reduce, Store,
                                   reads_follow_outputs)
from graphc.codegen.lower import Lowering
from graphc.codegen.offsets import lift_offsets
from graphc.codegen.opencl import render_kernel
from graphc.codegen.conv_gemm import build_conv_gemm
from graphc.codegen.gemm_epilogue import build_gemm, gemm_operands
from graphc.codegen.raw import raw_kernel
from graphc.codegen.reductions import loop_spec
from graphc.codegen.stores import store_targets
from graphc.codegen.width import kernel_is_wide
from graphc.ir import Tensor
from graphc.passes.fuse import Group

STEP_BUFFER = "graphc_step"
PREFIX = {"elementwise": "E", "reduce_sum": "R", "reduce_max": "R", "reduce_min": "R",
          "argmax": "A", "argmin": "A", "matmul": "MM", "conv2d": "CONV",
          "conv2d_grad_input": "CONVDX", "conv2d_grad_weight": "CONVDW",
          "max_pool2d": "MAXPOOL", "avg_pool2d": "AVGPOOL", "avg_pool2d_grad": "AVGPOOLDX",
          "max_pool2d_grad": "MAXPOOLDX", "max_pool2d_select": "MAXPOOLSEL",
          "softmax": "SOFTMAX", "log_softmax": "LOGSOFTMAX", "take_grad": "SCATTER",
          "softmax_cross_entropy": "XENT", "softmax_cross_entropy_grad": "XENTDX",
          "layer_norm": "LAYERNORM", "layer_norm_grad": "LAYERNORMDX"}


@dataclass(frozen=True)
class BuiltKernel:
    """One launch: kernel source, the plan buffers bound to its parameters, and metadata.

    `global_size`/`local_size` are set by kernels with their own geometry (GEMM); others
    run one work item per `work_items`, shaped by the compiler for the device."""

    name: str
    source: str
    args: tuple[str, ...]
    work_items: int
    ops: tuple[str, ...]
    flops: int
    bytes_read: int
    bytes_written: int
    global_size: tuple[int, ...] | None = None
    local_size: tuple[int, ...] | None = None
    scalars: tuple[int, ...] = ()       # int arguments after the buffers (lifted offsets)
    private: tuple[tuple[str, int], ...] = ()   # (buffer, bytes) only this group uses
    members: tuple[str, ...] = ()       # the kernels a horizontal merge runs as this one


SPLIT_MIN_LOOP = 2048       # shorter loops stay in one kernel
SPLIT_TARGET_ITEMS = 256    # work items a split aims for (enough to occupy a device)
SPLIT_MIN_CHUNK = 256       # each partial loop runs at least this long


def build_kernels(group: Group, buffer_of: dict[Tensor, str], dtype_of: dict,
                  device_info=None, tune=None, private_name: str = "p",
                  per_item: int = 1) -> list[BuiltKernel]:
    """Lower one group to source: usually one kernel; a long reduction with few outputs
    becomes two (partial results over chunks of the loop, then their combination); none
    for a group of empty values (nothing to compute: a conv2d with no output channels, a
    batch of 0). An elementwise kernel's work items take `per_item` elements each, a column
    reduction's `per_item` outputs (see reads_follow_outputs)."""
    if group.root.size == 0 and all(t.size == 0 for t in group.stores):
        return []
    if group.kind == "raw":
        return [_build_raw(group, buffer_of, dtype_of)]
    if device_info is not None and group.kind == "loop" and group.root.producer.op == "matmul":
        operands = gemm_operands(group.root, buffer_of)
        gemm = operands and build_gemm(group, buffer_of, dtype_of, device_info, operands, tune)
        if gemm is not None:
            return [gemm]
    if device_info is not None and group.kind == "loop":
        conv = build_conv_gemm(group, buffer_of, dtype_of, device_info, private_name)
        if conv is not None:
            return conv
    if group.kind == "loop":
        spec = loop_spec(group.root)
        split = split_factor(group.root.size, int(np.prod(spec.space, dtype=np.int64)),
                             spec.combiner)
        if split > 1:
            return _split_loop(group, spec, split, buffer_of, dtype_of, private_name, per_item)
    return [build_kernel(group, buffer_of, dtype_of, per_item)]


def split_factor(outputs: int, loop: int, combiner: str) -> int:
    """How many chunks to split a reduction loop into (1: do not split)."""
    if combiner not in ("sum", "max", "min") or outputs >= SPLIT_TARGET_ITEMS \
            or loop < SPLIT_MIN_LOOP:
        return 1
    wanted = -(-SPLIT_TARGET_ITEMS // max(outputs, 1))
    divisors = [s for s in range(2, min(wanted, loop // SPLIT_MIN_CHUNK) + 1) if loop % s == 0]
    return max(divisors, default=1)


def build_kernel(group: Group, buffer_of: dict[Tensor, str], dtype_of: dict,
                 per_item: int = 1) -> BuiltKernel:
    """One kernel for an elementwise or loop group."""
    low = Lowering(buffer_of)
    low.computing = set(group.stores) - {group.root} if group.kind == "loop" else set(group.stores)
    kernel = _loop_kernel(group, low, buffer_of) if group.kind == "loop" \
        else _elementwise_kernel(group, low, buffer_of)
    args = tuple(low.locals) + ((STEP_BUFFER,) if low.uses_step else ())
    return _finish(kernel, args, group, low, dtype_of, per_item=per_item)


def _stores(group: Group, low: Lowering, idx, buffer_of) -> tuple[Store, ...]:
    stores = []
    for t in group.stores:
        buffer = low.local(buffer_of[t], t.dtype)
        for part, at, index in store_targets(t, idx, group.root.shape):
            stores.append(Store(buffer, flatten(index, t.shape), low.at(part, at)))
    return tuple(stores)


def _elementwise_kernel(group: Group, low: Lowering, buffer_of) -> Kernel:
    space = group.root.shape
    idx = unflatten(var("gid", group.root.size), space)
    stores = _stores(group, low, idx, buffer_of)
    return Kernel("K", space, stores, _params(low, group, buffer_of), uses_step=low.uses_step)


def _loop_kernel(group: Group, low: Lowering, buffer_of) -> Kernel:
    t = group.root
    spec = loop_spec(t)
    out = unflatten(var("gid", t.size), t.shape)
    red = _loop_indices(spec.space)
    body = spec.body(low, out, red)
    acc = Acc(spec.acc_dtype)
    value = spec.finish(acc, out) if spec.finish else acc
    low.accumulated = (t, tuple(out), value)
    stores = _stores(group, low, out, buffer_of)
    reduce = Reduce(spec.space, "r", spec.combiner, body, spec.acc_dtype, _compensated(t))
    return Kernel("K", t.shape, stores, _params(low, group, buffer_of), reduce, low.uses_step)


def _compensated(t: Tensor) -> bool:
    """Are `t`'s sums added up with compensation (reductions: codegen/loops.py)?"""
    return t.producer.op == "reduce_sum"


def _split_loop(group: Group, spec, split: int, buffer_of, nbytes, private: str,
                per_item: int = 1):
    """Partial reductions over `split` chunks of the loop, then the usual kernel over them.
    The partial sums lie chunk by chunk, so that neighbouring outputs of a column sum stay
    neighbours in both kernels (see reads_follow_outputs)."""
    t = group.root
    low = Lowering(buffer_of)
    gid = var("gid", t.size * split)
    out = unflatten(gid % t.size, t.shape)
    red = _chunk_indices(floordiv(gid, t.size), split, spec.space)
    body = spec.body(low, out, red)
    store = Store(low.local(private, spec.acc_dtype), gid, Acc(spec.acc_dtype))
    params = tuple(Param(name, low.dtypes[b], b == private) for b, name in low.locals.items())
    space = _chunk_space(split, spec.space)
    first = Kernel("K", (t.size * split,), (store,), params,
                   Reduce(space, "r", spec.combiner, body, spec.acc_dtype, _compensated(t)),
                   low.uses_step)
    size = t.size * split * spec.acc_dtype.itemsize
    args = tuple(low.locals) + ((STEP_BUFFER,) if low.uses_step else ())
    partials = replace(_finish(first, args, group, low, nbytes, "P", per_item),
                       private=((private, size),))
    return [partials, _combine_partials(group, spec, split, private, buffer_of, nbytes,
                                        per_item, chunked=True)]


def _combine_partials(group: Group, spec, split: int, private: str, buffer_of, nbytes,
                      per_item: int = 1, chunked: bool = False):
    """The kernel combining `split` partial results per output, which lie chunk by chunk
    (`chunked`) or output by output (conv_gemm.py's), with the group's epilogue."""
    t = group.root
    low = Lowering(buffer_of)
    low.computing = set(group.stores) - {t}
    out = unflatten(var("gid", t.size), t.shape)
    partial = low.local(private, spec.acc_dtype)
    index = var("r", split) * t.size + var("gid", t.size) if chunked \
        else var("gid", t.size) * split + var("r", split)
    body = Load(spec.acc_dtype, partial, index)
    acc = Acc(spec.acc_dtype)
    low.accumulated = (t, tuple(out), spec.finish(acc, out) if spec.finish else acc)
    stores = _stores(group, low, out, buffer_of)
    reduce = Reduce((split,), "r", spec.combiner, body, spec.acc_dtype, _compensated(t))
    kernel = Kernel("K", t.shape, stores, _params(low, group, buffer_of), reduce, low.uses_step)
    args = tuple(low.locals) + ((STEP_BUFFER,) if low.uses_step else ())
    return _finish(kernel, args, group, low, nbytes, per_item=per_item)


def _chunk_space(split: int, space) -> tuple[int, ...]:
    """The loop space of one chunk: the outer dimension cut when `split` divides it."""
    if space[0] % split == 0:
        return (space[0] // split,) + tuple(space[1:])
    return (int(np.prod(space, dtype=np.int64)) // split,)


def _chunk_indices(chunk_number, split: int, space) -> list:
    """Loop indices of chunk `chunk_number`: nested loops when the outer dimension splits."""
    inner = _chunk_space(split, space)
    indices = _loop_indices(inner)
    if space[0] % split == 0:
        return [chunk_number * inner[0] + indices[0]] + indices[1:]
    return unflatten(chunk_number * inner[0] + indices[0], space)


def _loop_indices(space) -> list:
    """One index variable per loop dimension (nested loops: no division in the body)."""
    if len(space) == 1:
        return [var("r", space[0])]
    return [var(f"r{i}", n) for i, n in enumerate(space)]


def _params(low: Lowering, group: Group, buffer_of) -> tuple[Param, ...]:
    written = {buffer_of[t] for t in group.stores}
    return tuple(Param(name, low.dtypes[buffer], buffer in written)
                 for buffer, name in low.locals.items())


def _finish(kernel: Kernel, args, group: Group, low: Lowering, dtype_of,
            tag: str = "", per_item: int = 1) -> BuiltKernel:
    prefix = tag + (PREFIX.get(group.root.producer.op, "E") if group.kind == "loop" else "E")
    dims = "_".join(map(str, group.root.shape)) or "1"
    if kernel.reduce is not None:
        dims += "_" + "_".join(map(str, kernel.reduce.space))
    if kernel_is_wide(kernel, per_item):   # offsets stay in the indices, computed in long
        kernel, scalars = replace(kernel, wide=True), ()
    else:
        kernel, scalars = lift_offsets(kernel)
    if kernel.reduce is not None and per_item > 1 and not reads_follow_outputs(kernel, per_item):
        per_item = 1
    body = render_kernel(kernel, per_item)
    name = f"{prefix}_{dims}_{_digest(body)}"
    source = body.replace("__kernel void K(", f"__kernel void {name}(", 1)
    ops = tuple(f"{n.op} # {n.site}" for n in _ops_of(group, low))
    items = max(-(-int(np.prod(kernel.space, dtype=np.int64)) // per_item), 1)
    return BuiltKernel(name, source, args, items, ops, _flops(group, kernel),
                       *_traffic(args, group, dtype_of), scalars=scalars)


def _ops_of(group: Group, low: Lowering):
    nodes = [group.root.producer] if group.kind != "elementwise" else []
    return nodes + [n for n in low.ops if n not in nodes]


def _flops(group: Group, kernel: Kernel) -> int:
    reduce = int(np.prod(kernel.reduce.space, dtype=np.int64)) if kernel.reduce else 1
    return group.root.size * reduce * (2 if kernel.reduce else max(len(kernel.stores), 1))


def _traffic(args, group: Group, dtype_of) -> tuple[int, int]:
    written = sum(t.type.nbytes for t in group.stores)
    read = sum(dtype_of.get(a, 0) for a in args) - written
    return max(read, 0), written


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:6]


def _build_raw(group: Group, buffer_of, dtype_of) -> BuiltKernel:
    probe = raw_kernel("K", group.stores, buffer_of)
    prefix = PREFIX[group.root.producer.op]
    name = f"{prefix}_{'_'.join(map(str, probe.shape))}_{_digest(probe.source)}"
    source = probe.source.replace("__kernel void K(", f"__kernel void {name}(", 1)
    args = probe.args + ((STEP_BUFFER,) if probe.uses_step else ())
    ops = tuple(f"{n.op} # {n.site}" for n in probe.nodes)
    return BuiltKernel(name, source, args, probe.work_items, ops, probe.flops,
                       *_traffic(args, group, dtype_of))
