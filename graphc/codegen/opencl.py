"""Render kernel IR as OpenCL C. OpenCL specifics live here, in ctext.py and loops.py, and in
the op records' templates; codegen/opencl_renderer.py renders every other kind of kernel body
and the program. A wide kernel (codegen/width.py) indexes with `long`."""
from __future__ import annotations

import numpy as np

from graphc.codegen.ctext import c_type, literal, load_text, rounded, store_text
from graphc.codegen.index import render as render_index
from graphc.codegen.kernel import (Acc, Apply, Cond, Const, IndexValue, Kernel, Load, Random,
                                   Select, walk)
from graphc.codegen.loops import lanes_lines, reduce_lines
from graphc.codegen.width import index_type, number
from graphc.ops.registry import get_op


def _cond(cond: Cond) -> str:
    return f"({render_index(cond.form)} {cond.op} {cond.bound})"


def _conds(conds) -> str:
    return " && ".join(_cond(c) for c in conds) or "true"


class Emitter:
    """Turns expression DAGs into SSA statements, one temporary per distinct expression."""

    type_name = staticmethod(c_type)    # how the language spells a dtype

    def __init__(self, indent: str, first_temp: int = 0, wide: bool = False,
                 comments: bool = True):
        self.wide = wide            # 64-bit indices (codegen/width.py)
        self.comments = comments    # `// op` after each statement
        self.lines: list[str] = []
        self.names: dict = {}
        self.indent = indent
        self.next_temp = first_temp
        self.acc = "acc"            # the C variable an Acc reads

    def value(self, expr) -> str:
        """The C name of `expr`, emitting statements for what is not yet computed."""
        for node in walk(expr):
            if node not in self.names:
                self.names[node] = self._emit(node)
        return self.names[expr]

    def _emit(self, node) -> str:
        text, comment = self._text(node)
        if isinstance(node, (Const, Acc)):
            return text
        name = f"t{self.next_temp}"
        self.next_temp += 1
        suffix = f"  // {comment}" if comment and self.comments else ""
        self.lines.append(f"{self.indent}{self.type_name(node.dtype)} {name} = {text};{suffix}")
        return name

    def _text(self, node) -> tuple[str, str]:
        if isinstance(node, Const):
            return literal(node.value, node.dtype), ""
        if isinstance(node, Acc):
            return self.acc, ""
        if isinstance(node, Load):
            return _load_text(node, self.names, self.wide), f"load {node.buffer}"
        if isinstance(node, IndexValue):
            return rounded(f"({c_type(node.dtype)})({render_index(node.index)})",
                           node.dtype), ""
        if isinstance(node, Select):
            return (f"({_conds(node.conds)}) ? {self.names[node.a]} : "
                    f"{self.names[node.b]}"), "select"
        if isinstance(node, Random):
            return _random_text(node), f"random {node.dist}"
        return _apply_text(node, [self.names[a] for a in node.args]), node.op


def _load_text(node: Load, names: dict, wide: bool = False) -> str:
    index = render_index(node.index) + (f" + {node.offset}" if node.offset else "")
    for expr, stride, extent in node.dynamic:
        wrapped = f"({names[expr]} < 0 ? {names[expr]} + {extent} : {names[expr]})"
        clamped = f"clamp((long){wrapped}, 0L, {extent - 1}L)"
        index += f" + ({index_type(wide)}){clamped} * {stride}"
    text = load_text(node.buffer, index, node.dtype)
    if node.valid:
        text = f"(({_conds(node.valid)}) ? {text} : {literal(0, node.dtype)})"
    return text


# Ops this renderer spells as a helper of kernels_cl/ instead of their record's template:
# PoCL's built-in is a slow scalar call (opencl_renderer.py adds the helper's file).
HELPER_CALLS = {"tanh": "graphc_tanh_{T}({0})"}


def _apply_text(node: Apply, args: list[str]) -> str:
    if node.op == "cast":
        source = node.args[0].dtype
        if np.dtype(node.dtype).kind == "b":
            return f"({args[0]} != 0)"
        if np.dtype(source).kind == "f" and np.dtype(node.dtype).kind in "iu":
            return f"convert_{c_type(node.dtype)}_rtz({args[0]})"
        return rounded(f"({c_type(node.dtype)})({args[0]})", node.dtype)
    template = HELPER_CALLS.get(node.op) or get_op(node.op).templates["opencl"]
    return rounded(template.format(*args, T=c_type(node.dtype)), node.dtype)


def _random_text(node: Random) -> str:
    offset = f"graphc_step * {node.blocks_per_step}UL"
    index = f"(ulong)({render_index(node.index)})"
    seed = f"{node.seed & 0xFFFFFFFFFFFFFFFF}UL"
    a, b = (literal(p, node.dtype) for p in node.params)
    bits = "f64" if node.dtype == np.float64 else "f32"
    call = {"uniform": f"graphc_uniform_{bits}({seed}, {offset}, {index}, {a}, {b})",
            "normal": f"graphc_normal_{bits}({seed}, {offset}, {index}, {a}, {b})",
            "bernoulli": f"graphc_bernoulli_f32({seed}, {offset}, {index}, {a})"}[node.dist]
    return f"({c_type(node.dtype)})({call})"


def param_decls(kernel: Kernel) -> list[tuple[str, str, bool]]:
    """(type, name, is a buffer) of each parameter: buffers, the step buffer, int offsets."""
    params = []
    for p in kernel.params:
        const = "" if p.output else "const "
        params.append((f"__global {const}{c_type(p.dtype, storage=True)}* restrict", p.name,
                       True))
    if kernel.uses_step:
        params.append(("__global const ulong* restrict", "graphc_step_buffer", True))
    params += [("const int", name, False) for name in kernel.offsets]
    return params


def _params(kernel: Kernel) -> str:
    return ", ".join(f"{kind} {name}" for kind, name, _ in param_decls(kernel))


def _store(store, emitter: Emitter, dtype) -> str:
    value = emitter.value(store.value)
    index = render_index(store.index) + (f" + {store.offset}" if store.offset else "")
    return emitter.indent + store_text(store.buffer, index, value, dtype)


def render_kernel(kernel: Kernel, per_item: int = 1, name: str | None = None) -> str:
    """OpenCL C source of one kernel, named `name` (default: the IR's name)."""
    head, tail = kernel_parts(kernel, per_item)
    return head + (kernel.name if name is None else name) + tail


def kernel_parts(kernel: Kernel, per_item: int = 1) -> tuple[str, str]:
    """The source of one kernel before and after its name. With `per_item` > 1 a work item
    computes that many consecutive outputs: a loop over them (see items_loop), or for a
    reduction one accumulator each, updated together (see loops.lanes_lines)."""
    lines = _lanes_kernel(kernel, per_item) if per_item > 1 and kernel.reduce is not None \
        else _kernel_lines(kernel, per_item)
    return "__kernel void ", "\n".join(lines) + "\n"


def member_function(kernel: Kernel, name: str) -> str:
    """A kernel of one work item per element as a function `name` of its parameters and its
    work item id (a member of a merged kernel, codegen/horizontal.py)."""
    lines = _kernel_lines(kernel, 1)
    params = [f"{kind} {param}" for kind, param, _ in param_decls(kernel)]
    params.append(f"const {index_type(kernel.wide)} gid")
    return f"void {name}({', '.join(params)}) {{\n" + "\n".join(lines[2:]) + "\n"


def _kernel_lines(kernel: Kernel, per_item: int) -> list[str]:
    """The lines of a kernel after its name: `(parameters) {`, the work item's index (the
    second line, in the one-element form), the body and the closing brace."""
    total = int(np.prod(kernel.space, dtype=np.int64))
    wide, index = kernel.wide, index_type(kernel.wide)
    lines = [f"({_params(kernel)}) {{"]
    looped = per_item > 1
    lines += items_loop(total, per_item, wide) if looped else \
        [f"  const {index} gid = get_global_id(0);",
         f"  if (gid >= {number(total, wide)}) return;"]
    if kernel.uses_step:     # before the loop, after the guard (see member_function)
        lines.insert(len(lines) - looped, "  const ulong graphc_step = graphc_step_buffer[0];")
    emitter = Emitter("    " if looped else "  ", wide=wide)
    if kernel.reduce is not None:
        loop = Emitter("    ", wide=wide)
        lines += reduce_lines(kernel.reduce, loop, wide)
        emitter.next_temp = loop.next_temp     # loop temporaries are out of scope after it
        if kernel.reduce.combiner in ("argmax", "argmin"):
            emitter.acc = "best"                # the index, not the extreme value
    stores = _stores(kernel, emitter)
    return lines + emitter.lines + stores + (["  }"] if looped else []) + ["}"]


def _stores(kernel: Kernel, emitter: Emitter) -> list[str]:
    out_dtypes = {p.name: p.dtype for p in kernel.params}
    return [_store(s, emitter, out_dtypes[s.buffer]) for s in kernel.stores]


def _lanes_kernel(kernel: Kernel, lanes: int) -> list[str]:
    """A reduction whose work item owns `lanes` consecutive outputs: the loop outside, an
    inner loop over the lanes the CPU compiler vectorizes (when neighbouring outputs read
    neighbouring addresses: column sums), then each output's epilogue and stores. The last
    work item's lanes start early enough to stay in bounds (a clamped index would stop the
    vectorizer) and it stores only the outputs past the previous item's."""
    total = int(np.prod(kernel.space, dtype=np.int64))
    lanes = min(lanes, total)
    wide, index = kernel.wide, index_type(kernel.wide)
    first = f"min(start, {number(total - lanes, wide)})" if total % lanes else "start"
    lines = [f"({_params(kernel)}) {{",
             f"  const {index} start = get_global_id(0) * {lanes};",
             f"  if (start >= {number(total, wide)}) return;",
             f"  const {index} first = {first};"]
    if kernel.uses_step:
        lines.append("  const ulong graphc_step = graphc_step_buffer[0];")
    loop = Emitter("      ", wide=wide)
    lines += lanes_lines(kernel.reduce, lanes, loop, wide)
    emitter = Emitter("    ", first_temp=loop.next_temp, wide=wide)
    emitter.acc = "best[gid - first]" if kernel.reduce.combiner in ("argmax", "argmin") \
        else "acc[gid - first]"
    lines += [f"  const {index} end = min(start + {number(lanes, wide)}, {number(total, wide)});",
              f"  for ({index} gid = start; gid < end; ++gid) {{"]
    stores = _stores(kernel, emitter)
    return lines + emitter.lines + stores + ["  }", "}"]


def items_loop(total: int, per_item: int, wide: bool = False) -> list[str]:
    """The head of a loop over `per_item` consecutive elements per work item. On CPUs the
    compiler vectorizes this loop itself; PoCL's vectorization across the work items of a
    group fails once its SLP pass has packed similar statements of one item (the gates of an
    LSTM cell: 4x slower)."""
    index = index_type(wide)
    return [f"  const {index} first = get_global_id(0) * {per_item};",
            f"  const {index} end = min(first + {number(per_item, wide)}, {number(total, wide)});",
            f"  for ({index} gid = first; gid < end; ++gid) {{"]
