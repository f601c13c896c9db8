"""Kernels of hand-written templates as data: softmax rows, max-pool routing (RawBody) and
softmax cross-entropy rows (RowsBody, codegen/cross_entropy.py): the plan buffers they
read and write, their work items and cost. Each backend renders its own template of them
(OpenCL: codegen/raw.py, codegen/opencl_rows.py)."""
from __future__ import annotations

from graphc.codegen.built import STEP_BUFFER, BuiltKernel, RawBody, node_ops, traffic
from graphc.codegen.cross_entropy import row_kernel
from graphc.codegen.kernel_groups import KernelGroup
from graphc.codegen.lowerings import lowering_of, operand_view
from graphc.codegen.loop_kernels import stored_buffers
from graphc.codegen.width import beyond_int


def raw_kernel(group: KernelGroup, buffer_of: dict, nbytes: dict) -> BuiltKernel:
    """The BuiltKernel of a raw group: one value, or a fused cross-entropy pair."""
    node = group.root.producer
    lowering = lowering_of(node.op)
    if lowering.template == "cross_entropy_rows":
        k = row_kernel(list(group.stores), buffer_of)
        body, items, nodes, flops = k.body, k.rows, k.nodes, k.flops
        shape, args = node.inputs[0].shape, k.args + ((STEP_BUFFER,) if k.uses_step else ())
    else:
        (t,) = group.stores
        wide = beyond_int(max(x.size for x in (t, *node.inputs)) + t.size)
        body, nodes, shape = RawBody(node.op, t, node, wide), (node,), t.shape
        items, flops = lowering.geometry(t, node)
        inputs = (operand_view(i, buffer_of.__contains__)[0] for i in node.inputs)
        args = tuple(buffer_of[i] for i in inputs) + (buffer_of[t],)
    return BuiltKernel(f"{lowering.prefix}_{'_'.join(map(str, shape))}", body, args, items,
                       node_ops(nodes), flops, *traffic(args, group.stores, nbytes),
                       writes=stored_buffers(args, group.stores, buffer_of))
