"""Kernels in the kernel IR for elementwise and loop groups (codegen/build.py chooses).

An elementwise kernel computes its stores at each element of the root's shape; a loop
kernel loops over the root's LoopSpec (codegen/reductions.py) and stores the accumulated
value and its epilogues. A long reduction with few outputs is split in two: partial results
over chunks of the loop, then their combination (also the last step of a split GEMM).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from graphc.codegen.built import (STEP_BUFFER, BuiltKernel, IRBody, node_ops, traffic)
from graphc.codegen.index import flatten, floordiv, unflatten, var
from graphc.codegen.kernel import (Acc, Kernel, Load, Param, Reduce, Store,
                                   reads_follow_outputs)
from graphc.codegen.kernel_groups import KernelGroup
from graphc.codegen.lower import Lowering
from graphc.codegen.lowerings import loop_spec, lowering_of
from graphc.codegen.offsets import lift_offsets
from graphc.codegen.stores import store_targets
from graphc.codegen.width import kernel_is_wide
from graphc.ir import Tensor


def build_kernel(group: KernelGroup, buffer_of: dict[Tensor, str], dtype_of: dict,
                 per_item: int = 1) -> BuiltKernel:
    """One kernel for an elementwise or loop group."""
    low = Lowering(buffer_of)
    low.computing = set(group.stores) - {group.root} if group.kind == "loop" else set(group.stores)
    kernel = _loop_kernel(group, low, buffer_of) if group.kind == "loop" \
        else _elementwise_kernel(group, low, buffer_of)
    args = tuple(low.locals) + ((STEP_BUFFER,) if low.uses_step else ())
    return _finish(kernel, args, group, low, dtype_of, per_item=per_item)


def _stores(group: KernelGroup, low: Lowering, idx, buffer_of) -> tuple[Store, ...]:
    stores = []
    for t in group.stores:
        buffer = low.local(buffer_of[t], t.dtype)
        for part, at, index in store_targets(t, idx, group.root.shape):
            stores.append(Store(buffer, flatten(index, t.shape), low.at(part, at)))
    return tuple(stores)


def _elementwise_kernel(group: KernelGroup, low: Lowering, buffer_of) -> Kernel:
    space = group.root.shape
    idx = unflatten(var("gid", group.root.size), space)
    stores = _stores(group, low, idx, buffer_of)
    return Kernel("K", space, stores, _params(low, group, buffer_of), uses_step=low.uses_step)


def _loop_kernel(group: KernelGroup, low: Lowering, buffer_of) -> Kernel:
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


def split_loop(group: KernelGroup, spec, split: int, buffer_of, nbytes, private: str,
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
    partials = replace(_finish(first, args, group, low, nbytes, "P", per_item, writes=()),
                       private=((private, size),))
    return [partials, combine_partials(group, spec, split, private, buffer_of, nbytes,
                                       per_item, chunked=True)]


def combine_partials(group: KernelGroup, spec, split: int, private: str, buffer_of, nbytes,
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


def _params(low: Lowering, group: KernelGroup, buffer_of) -> tuple[Param, ...]:
    written = {buffer_of[t] for t in group.stores}
    return tuple(Param(name, low.dtypes[buffer], buffer in written)
                 for buffer, name in low.locals.items())


def _finish(kernel: Kernel, args, group: KernelGroup, low: Lowering, nbytes,
            tag: str = "", per_item: int = 1, writes=None) -> BuiltKernel:
    """The BuiltKernel of `kernel`: 64-bit indices where an index needs them, else constant
    offsets lifted into arguments; `per_item` outputs per work item where its loads allow."""
    prefix = tag + (lowering_of(group.root.producer.op).prefix if group.kind == "loop" else "E")
    dims = "_".join(map(str, group.root.shape)) or "1"
    if kernel.reduce is not None:
        dims += "_" + "_".join(map(str, kernel.reduce.space))
    if kernel_is_wide(kernel, per_item):   # offsets stay in the indices, computed in long
        kernel, scalars = replace(kernel, wide=True), ()
    else:
        kernel, scalars = lift_offsets(kernel)
    if kernel.reduce is not None and per_item > 1 and not reads_follow_outputs(kernel, per_item):
        per_item = 1
    items = max(-(-int(np.prod(kernel.space, dtype=np.int64)) // per_item), 1)
    writes = stored_buffers(args, group.stores, low.buffers) if writes is None else writes
    return BuiltKernel(f"{prefix}_{dims}", IRBody(kernel, per_item), args, items,
                       node_ops(kernel_nodes(group, low)), _flops(group, kernel),
                       *traffic(args, group.stores, nbytes), scalars=scalars, writes=writes)


def stored_buffers(args, stores, buffer_of) -> tuple:
    """(buffer, value) of each value a kernel over `args` stores, in argument order."""
    written = {buffer_of[t]: t for t in stores}
    return tuple((a, written[a]) for a in dict.fromkeys(args) if a in written)


def kernel_nodes(group: KernelGroup, low: Lowering) -> list:
    """The graph nodes a kernel computes: a loop's own node first, then those lowered."""
    nodes = [group.root.producer] if group.kind != "elementwise" else []
    return nodes + [n for n in low.ops if n not in nodes]


def _flops(group: KernelGroup, kernel: Kernel) -> int:
    reduce = int(np.prod(kernel.reduce.space, dtype=np.int64)) if kernel.reduce else 1
    return group.root.size * reduce * (2 if kernel.reduce else max(len(kernel.stores), 1))
