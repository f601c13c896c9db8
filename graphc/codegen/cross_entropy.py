"""The softmax cross-entropy row kernel: one work item per row finds the row's max and
log-sum-exp once, then writes the row's loss, its gradient by the logits, or both (fusion
puts the loss and the gradient of the same logits in one kernel: passes/fuse.py).

The logits are read from a buffer (three passes over the row); the targets and the
gradient's row scale g are lowered inline (codegen/lower.py), so a one_hot of labels or a
broadcast constant costs no kernel of its own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from graphc.codegen.index import Lin, flatten, render, unflatten, var
from graphc.codegen.kernel import Load
from graphc.codegen.lower import Lowering
from graphc.codegen.ctext import rounded, store_text
from graphc.codegen.opencl import Emitter, c_type
from graphc.codegen.width import beyond_int, exprs_fit, index_type
from graphc.ir import Tensor
from graphc.ops.cross_entropy import is_sparse, row_shape

LOSS, GRAD = "softmax_cross_entropy", "softmax_cross_entropy_grad"
XENT_OPS = frozenset({LOSS, GRAD})
INLINE_OPERANDS = {LOSS: (1,), GRAD: (1, 2)}    # operands computed inline, not loaded


@dataclass(frozen=True)
class RowKernel:
    """A cross-entropy row kernel: source, the plan buffers of its parameters, metadata."""

    source: str
    args: tuple[str, ...]
    rows: int
    nodes: tuple
    flops: int
    uses_step: bool


def fusable(loss: Tensor, grad: Tensor) -> bool:
    """Are `loss` and `grad` a cross-entropy and its gradient over the same logits?"""
    a, b = loss.producer, grad.producer
    return (a.op, b.op) == (LOSS, GRAD) and a.attrs == b.attrs \
        and all(x is y for x, y in zip(a.inputs[:2], b.inputs[:2]))


class _Row:
    """One work item's row of the logits x along `axis`, and the C emitted for it."""

    def __init__(self, node, buffer_of, wide: bool = False):
        self.wide = wide            # 64-bit indices (codegen/width.py)
        self.exprs: list = []       # every expression emitted (their indices decide `wide`)
        self.x, self.targets = node.inputs[:2]
        self.axis = node.attrs["axis"]
        self.n = self.x.shape[self.axis]
        shape = row_shape(self.x.shape, self.axis)
        self.rows = math.prod(shape)
        self.row = unflatten(var("gid", self.rows), shape)
        self.low = Lowering(buffer_of)
        if self.x in buffer_of:     # the logits: parameter b0 (a 1-element literal: none)
            self.low.local(buffer_of[self.x], self.x.dtype)
        self.next_temp = 0

    def at(self, i) -> list[Lin]:
        """The multi-index of element `i` of this row."""
        return self.row[:self.axis] + [i] + self.row[self.axis:]

    def emit(self, exprs, indent: str) -> tuple[list[str], list[str]]:
        """C statements computing `exprs` (temporaries numbered across the kernel)."""
        emitter = Emitter(indent, self.next_temp, self.wide)
        self.exprs += exprs
        names = [emitter.value(e) for e in exprs]
        self.next_temp = emitter.next_temp
        return emitter.lines, names

    def loop(self, body, targets: bool = True) -> list[str]:
        """`for i` over the row; body(x_i, t_i) gives the statement (t_i: dense targets)."""
        i = var("i", self.n)
        exprs = [self.low.at(self.x, self.at(i))]
        if targets and not is_sparse(self.targets):
            exprs.append(self.low.at(self.targets, self.at(i)))
        lines, names = self.emit(exprs, "    ")
        return [f"  for ({index_type(self.wide)} i = 0; i < {self.n}; ++i) {{", *lines,
                f"    {body(*names)}", "  }"]

    def element(self) -> str:
        """C text of the flat offset of element i of this row."""
        return render(flatten(self.at(var("i", self.n)), self.x.shape))

    def store(self, output: Tensor, buffer: str, index: str, value: str) -> str:
        """The statement storing `value` at `index` of `output`'s buffer."""
        return store_text(buffer, index, rounded(value, output.dtype), output.dtype)

    def picked(self, label) -> Load:
        """x at the label's position in this row (clamped: read only where valid)."""
        if self.n == 1:             # the only position (and x may be a 1-element literal)
            return self.low.at(self.x, self.at(Lin()))
        stride = math.prod(self.x.shape[self.axis + 1:])
        buffer = self.low.local(self.low.buffers[self.x], self.x.dtype)
        return Load(self.x.dtype, buffer, flatten(self.at(Lin()), self.x.shape), (),
                    ((label, stride, self.n),))


def row_kernel(name: str, stores: list[Tensor], buffer_of) -> RowKernel:
    """The kernel computing `stores`: a cross-entropy, its gradient, or both; with 64-bit
    indices where the logits or an index it computes pass 32 bits."""
    kernel, r = _row_kernel(name, stores, buffer_of, False)
    if beyond_int(r.x.size) or not exprs_fit(r.exprs):
        kernel, _ = _row_kernel(name, stores, buffer_of, True)
    return kernel


def _row_kernel(name: str, stores: list[Tensor], buffer_of, wide: bool):
    loss = next((t for t in stores if t.producer.op == LOSS), None)
    grad = next((t for t in stores if t.producer.op == GRAD), None)
    r = _Row(stores[0].producer, buffer_of, wide)
    outputs = [t for t in (loss, grad) if t is not None]
    out = {t.producer.op: r.low.local(buffer_of[t], t.dtype) for t in outputs}
    lines = [f"  {c_type(r.x.dtype)} m = -INFINITY, s = 0;"]
    lines += r.loop(lambda x, *_: f"m = max(m, {x});", targets=False)
    lines += (_sparse if is_sparse(r.targets) else _dense)(r, out, loss, grad)
    head = _signature(name, r.low, set(out.values()), r.rows, wide)
    nodes = [t.producer for t in outputs]
    nodes += [n for n in r.low.ops if n not in nodes]
    flops = r.x.size * (6 + 5 * (grad is not None))
    return RowKernel("\n".join(head + lines + ["}"]) + "\n", tuple(r.low.locals), r.rows,
                     tuple(nodes), flops, r.low.uses_step), r


def _row_values(r: _Row, exprs: dict) -> tuple[list[str], dict]:
    """Per-row values (label, x[label], g) emitted once before the loops that use them."""
    lines, names = r.emit(list(exprs.values()), "  ")
    return lines, dict(zip(exprs, names))


def _sparse(r: _Row, out: dict, loss, grad) -> list[str]:
    """loss = log s - (x[label] - m); dx = g * (hit * p - (i == label)), hit = valid."""
    T = c_type(r.x.dtype)
    label = r.low.at(r.targets, r.row)
    exprs = {"label": label}
    if LOSS in out:
        exprs["picked"] = r.picked(label)
    if grad is not None:
        exprs["g"] = r.low.at(grad.producer.inputs[2], r.row)
    lines = r.loop(lambda x, *_: f"s += exp({x} - m);")
    values, v = _row_values(r, exprs)
    lines += values + [f"  const bool valid = {v['label']} >= 0 && {v['label']} < {r.n};"]
    if LOSS in out:
        value = f"valid ? log(s) - ({v['picked']} - m) : ({T})0"
        lines.append("  " + r.store(loss, out[LOSS], "gid", value))
    if grad is not None:
        hit, one, zero = f"(valid ? ({T})1 : ({T})0)", f"({T})1", f"({T})0"
        lines += r.loop(lambda x, *_: r.store(
            grad, out[GRAD], r.element(), f"{v['g']} * ({hit} * exp({x} - m) / s - "
            f"(i == {v['label']} ? {one} : {zero}))"))
    return lines


def _dense(r: _Row, out: dict, loss, grad) -> list[str]:
    """loss = total * log s - sum(t * (x - m)), total = sum(t); dx = g * (total * p - t)."""
    lines = [f"  {c_type(r.x.dtype)} total = 0, dot = 0;"]
    lines += r.loop(lambda x, t: f"s += exp({x} - m); total += {t}; dot += {t} * ({x} - m);")
    if LOSS in out:
        lines.append("  " + r.store(loss, out[LOSS], "gid", "total * log(s) - dot"))
    if grad is not None:
        values, v = _row_values(r, {"g": r.low.at(grad.producer.inputs[2], r.row)})
        lines += values + r.loop(lambda x, t: r.store(
            grad, out[GRAD], r.element(), f"{v['g']} * (total * exp({x} - m) / s - {t})"))
    return lines


def _signature(name: str, low: Lowering, outputs: set[str], rows: int,
               wide: bool) -> list[str]:
    params = [f"__global {'' if p in outputs else 'const '}"
              f"{c_type(low.dtypes[b], storage=True)}* restrict {p}"
              for b, p in low.locals.items()]
    step = ["__global const ulong* restrict graphc_step_buffer"] if low.uses_step else []
    lines = [f"__kernel void {name}({', '.join(params + step)}) {{",
             f"  const {index_type(wide)} gid = get_global_id(0);",
             f"  if (gid >= {rows}) return;"]
    if low.uses_step:
        lines.append("  const ulong graphc_step = graphc_step_buffer[0];")
    return lines
