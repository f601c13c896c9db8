"""The softmax cross-entropy row kernel as data: one work item per row finds the row's max and
log-sum-exp once, then writes the row's loss, its gradient by the logits, or both (fusion
puts the loss and the gradient of the same logits in one kernel: passes/fuse.py).

The logits are read from a buffer (three passes over the row); the targets and the
gradient's row scale g are lowered inline (codegen/lower.py), so a one_hot of labels or a
broadcast constant costs no kernel of its own. The renderers' row templates
(codegen/opencl_rows.py) turn the RowsBody into source.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from graphc.codegen.built import RowsBody
from graphc.codegen.index import Lin, flatten, unflatten, var
from graphc.codegen.kernel import Load, Param
from graphc.codegen.lower import Lowering
from graphc.codegen.lowerings import GRAD, LOSS
from graphc.codegen.width import beyond_int, exprs_fit
from graphc.ir import Tensor
from graphc.ops.cross_entropy import is_sparse, row_shape


@dataclass(frozen=True)
class RowKernel:
    """A cross-entropy row kernel: its body, the plan buffers of its parameters, metadata."""

    body: RowsBody
    args: tuple[str, ...]
    rows: int
    nodes: tuple
    flops: int
    uses_step: bool


class _Row:
    """One work item's row of the logits x along `axis`, lowered."""

    def __init__(self, node, buffer_of):
        self.x, self.targets = node.inputs[:2]
        self.axis = node.attrs["axis"]
        self.n = self.x.shape[self.axis]
        shape = row_shape(self.x.shape, self.axis)
        self.rows = math.prod(shape)
        self.row = unflatten(var("gid", self.rows), shape)
        self.low = Lowering(buffer_of)
        if self.x in buffer_of:     # the logits: parameter b0 (a 1-element literal: none)
            self.low.local(buffer_of[self.x], self.x.dtype)

    def at(self, i) -> list[Lin]:
        """The multi-index of element `i` of this row."""
        return self.row[:self.axis] + [i] + self.row[self.axis:]

    def picked(self, label) -> Load:
        """x at the label's position in this row (clamped: read only where valid)."""
        if self.n == 1:             # the only position (and x may be a 1-element literal)
            return self.low.at(self.x, self.at(Lin()))
        stride = math.prod(self.x.shape[self.axis + 1:])
        buffer = self.low.local(self.low.buffers[self.x], self.x.dtype)
        return Load(self.x.dtype, buffer, flatten(self.at(Lin()), self.x.shape), (),
                    ((label, stride, self.n),))


def row_kernel(stores: list[Tensor], buffer_of) -> RowKernel:
    """The kernel computing `stores`: a cross-entropy, its gradient, or both; with 64-bit
    indices where the logits or an index it computes pass 32 bits. Values are lowered in
    the order the template reads them, which fixes the parameters' order."""
    loss = next((t for t in stores if t.producer.op == LOSS), None)
    grad = next((t for t in stores if t.producer.op == GRAD), None)
    r = _Row(stores[0].producer, buffer_of)
    outputs = [t for t in (loss, grad) if t is not None]
    out = {t.producer.op: (r.low.local(buffer_of[t], t.dtype), t.dtype) for t in outputs}
    i = var("i", r.n)
    values = {"x_i": r.low.at(r.x, r.at(i))}
    if is_sparse(r.targets):
        values["label"] = r.low.at(r.targets, r.row)
        if loss is not None:
            values["picked"] = r.picked(values["label"])
    else:
        values["t_i"] = r.low.at(r.targets, r.at(i))
    if grad is not None:
        values["g"] = r.low.at(grad.producer.inputs[2], r.row)
    wide = beyond_int(r.x.size) or not exprs_fit(list(values.values()))
    params = tuple(Param(p, r.low.dtypes[b], any(p == o for o, _ in out.values()))
                   for b, p in r.low.locals.items())
    body = RowsBody(r.x.dtype, r.n, r.rows, wide, params, r.low.uses_step, out.get(LOSS),
                    out.get(GRAD), element=flatten(r.at(i), r.x.shape), **values)
    nodes = [t.producer for t in outputs]
    nodes += [n for n in r.low.ops if n not in nodes]
    flops = r.x.size * (6 + 5 * (grad is not None))
    return RowKernel(body, tuple(r.low.locals), r.rows, tuple(nodes), flops, r.low.uses_step)
