"""The softmax cross-entropy row template in OpenCL C (the body: codegen/cross_entropy.py).

Three passes over the row: its max, the sum of exp (and, dense, the targets' total and dot),
then the gradient; the loss is stored between. The kernel IR operands are emitted as
temporaries numbered across the kernel.
"""
from __future__ import annotations

from graphc.codegen.built import RowsBody
from graphc.codegen.ctext import c_type, rounded, store_text
from graphc.codegen.index import render
from graphc.codegen.opencl import Emitter
from graphc.codegen.width import index_type


class _Text:
    """The C emitted for one row kernel, temporaries numbered across it."""

    def __init__(self, body: RowsBody):
        self.body = body
        self.next_temp = 0

    def emit(self, exprs, indent: str) -> tuple[list[str], list[str]]:
        """C statements computing `exprs`, and their names."""
        emitter = Emitter(indent, self.next_temp, self.body.wide)
        names = [emitter.value(e) for e in exprs]
        self.next_temp = emitter.next_temp
        return emitter.lines, names

    def loop(self, statement, targets: bool = True) -> list[str]:
        """`for i` over the row; statement(x_i, t_i) gives its body (t_i: dense targets)."""
        b = self.body
        exprs = [b.x_i] + ([b.t_i] if targets and b.t_i is not None else [])
        lines, names = self.emit(exprs, "    ")
        return [f"  for ({index_type(b.wide)} i = 0; i < {b.n}; ++i) {{", *lines,
                f"    {statement(*names)}", "  }"]

    def store(self, output, index: str, value: str) -> str:
        """The statement storing `value` at `index` of `output` (parameter, dtype)."""
        param, dtype = output
        return store_text(param, index, rounded(value, dtype), dtype)


def render_rows(body: RowsBody, name: str) -> str:
    """The OpenCL C source of a cross-entropy row kernel named `name`."""
    text = _Text(body)
    lines = [f"  {c_type(body.x_dtype)} m = -INFINITY, s = 0;"]
    lines += text.loop(lambda x, *_: f"m = max(m, {x});", targets=False)
    lines += (_sparse if body.label is not None else _dense)(text, body)
    return "\n".join(_signature(name, body) + lines + ["}"]) + "\n"


def _sparse(text: _Text, b: RowsBody) -> list[str]:
    """loss = log s - (x[label] - m); dx = g * (hit * p - (i == label)), hit = valid."""
    T = c_type(b.x_dtype)
    exprs = {"label": b.label}
    if b.loss is not None:
        exprs["picked"] = b.picked
    if b.grad is not None:
        exprs["g"] = b.g
    lines = text.loop(lambda x, *_: f"s += exp({x} - m);")
    values, names = text.emit(list(exprs.values()), "  ")
    v = dict(zip(exprs, names))
    lines += values + [f"  const bool valid = {v['label']} >= 0 && {v['label']} < {b.n};"]
    if b.loss is not None:
        value = f"valid ? log(s) - ({v['picked']} - m) : ({T})0"
        lines.append("  " + text.store(b.loss, "gid", value))
    if b.grad is not None:
        hit, one, zero = f"(valid ? ({T})1 : ({T})0)", f"({T})1", f"({T})0"
        lines += text.loop(lambda x, *_: text.store(
            b.grad, render(b.element), f"{v['g']} * ({hit} * exp({x} - m) / s - "
            f"(i == {v['label']} ? {one} : {zero}))"))
    return lines


def _dense(text: _Text, b: RowsBody) -> list[str]:
    """loss = total * log s - sum(t * (x - m)), total = sum(t); dx = g * (total * p - t)."""
    lines = [f"  {c_type(b.x_dtype)} total = 0, dot = 0;"]
    lines += text.loop(lambda x, t: f"s += exp({x} - m); total += {t}; dot += {t} * ({x} - m);")
    if b.loss is not None:
        lines.append("  " + text.store(b.loss, "gid", "total * log(s) - dot"))
    if b.grad is not None:
        values, (g,) = text.emit([b.g], "  ")
        lines += values + text.loop(lambda x, t: text.store(
            b.grad, render(b.element), f"{g} * (total * exp({x} - m) / s - {t})"))
    return lines


def _signature(name: str, b: RowsBody) -> list[str]:
    params = [f"__global {'' if p.output else 'const '}{c_type(p.dtype, storage=True)}* "
              f"restrict {p.name}" for p in b.params]
    step = ["__global const ulong* restrict graphc_step_buffer"] if b.uses_step else []
    lines = [f"__kernel void {name}({', '.join(params + step)}) {{",
             f"  const {index_type(b.wide)} gid = get_global_id(0);",
             f"  if (gid >= {b.rows}) return;"]
    if b.uses_step:
        lines.append("  const ulong graphc_step = graphc_step_buffer[0];")
    return lines
