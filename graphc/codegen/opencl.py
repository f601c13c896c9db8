"""Render kernel IR as OpenCL C. OpenCL specifics live here and in the registry's templates."""
from __future__ import annotations

import math
from importlib import resources

import numpy as np

from graphc.codegen.index import flatten, var
from graphc.codegen.index import render as render_index
from graphc.codegen.kernel import (Acc, Apply, Cond, Const, IndexValue, Kernel, Load, Random,
                                   Select, walk)
from graphc.ops import get_op

C_TYPES = {"float16": "half", "float32": "float", "float64": "double", "int32": "int",
           "int64": "long", "bool": "bool"}
STORAGE_TYPES = {**C_TYPES, "bool": "uchar"}     # bool is not a legal buffer element type
IDENTITY = {"sum": "0", "max": "-INFINITY", "min": "INFINITY"}


def c_type(dtype, storage: bool = False) -> str:
    """The OpenCL C type of a numpy dtype (uchar for bool in memory)."""
    return (STORAGE_TYPES if storage else C_TYPES)[np.dtype(dtype).name]


def literal(value, dtype) -> str:
    """A C literal of `dtype` (INFINITY/NAN spelled out; float suffixes explicit)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return "true" if value else "false"
    if dtype.kind in "iu":
        if dtype.itemsize == 8 and int(value) == np.iinfo(np.int64).min:
            return f"({int(value) + 1}L - 1L)"      # C has no literal of the minimum itself
        return f"{int(value)}L" if dtype.itemsize == 8 else str(int(value))
    value = float(value)
    if math.isnan(value):
        text = "NAN"
    elif math.isinf(value):
        text = "INFINITY" if value > 0 else "-INFINITY"
    else:
        text = repr(value) + ("f" if dtype.itemsize <= 4 else "")
    return f"(({c_type(dtype)}){text})" if dtype.itemsize != 4 or not text[-1] == "f" else text


def _cond(cond: Cond) -> str:
    return f"({render_index(cond.form)} {cond.op} {cond.bound})"


def _conds(conds) -> str:
    return " && ".join(_cond(c) for c in conds) or "true"


def _identity(combiner: str, dtype) -> str:
    if np.dtype(dtype).kind in "iu" and combiner in ("max", "min", "argmax", "argmin"):
        info = np.iinfo(dtype)
        bound = info.min if combiner in ("max", "argmax") else info.max
        return literal(bound, dtype)
    return IDENTITY[{"argmax": "max", "argmin": "min"}.get(combiner, combiner)]


class Emitter:
    """Turns expression DAGs into SSA statements, one temporary per distinct expression."""

    def __init__(self, indent: str, first_temp: int = 0):
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
        suffix = f"  // {comment}" if comment else ""
        self.lines.append(f"{self.indent}{c_type(node.dtype)} {name} = {text};{suffix}")
        return name

    def _text(self, node) -> tuple[str, str]:
        if isinstance(node, Const):
            return literal(node.value, node.dtype), ""
        if isinstance(node, Acc):
            return self.acc, ""
        if isinstance(node, Load):
            return _load_text(node, self.names), f"load {node.buffer}"
        if isinstance(node, IndexValue):
            return f"({c_type(node.dtype)})({render_index(node.index)})", ""
        if isinstance(node, Select):
            return (f"({_conds(node.conds)}) ? {self.names[node.a]} : "
                    f"{self.names[node.b]}"), "select"
        if isinstance(node, Random):
            return _random_text(node), f"random {node.dist}"
        return _apply_text(node, [self.names[a] for a in node.args]), node.op


def _load_text(node: Load, names: dict) -> str:
    index = render_index(node.index) + (f" + {node.offset}" if node.offset else "")
    for expr, stride, extent in node.dynamic:
        wrapped = f"({names[expr]} < 0 ? {names[expr]} + {extent} : {names[expr]})"
        clamped = f"clamp((long){wrapped}, 0L, {extent - 1}L)"
        index += f" + (int){clamped} * {stride}"
    text = f"{node.buffer}[{index}]"
    if np.dtype(node.dtype).kind == "b":
        text = f"({text} != 0)"
    if node.valid:
        text = f"(({_conds(node.valid)}) ? {text} : {literal(0, node.dtype)})"
    return text


def _apply_text(node: Apply, args: list[str]) -> str:
    if node.op == "cast":
        source = node.args[0].dtype
        if np.dtype(node.dtype).kind == "b":
            return f"({args[0]} != 0)"
        if np.dtype(source).kind == "f" and np.dtype(node.dtype).kind in "iu":
            return f"convert_{c_type(node.dtype)}_rtz({args[0]})"
        return f"({c_type(node.dtype)})({args[0]})"
    template = get_op(node.op).templates["opencl"]
    return template.format(*args, T=c_type(node.dtype))


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


def _params(kernel: Kernel) -> str:
    params = []
    for p in kernel.params:
        const = "" if p.output else "const "
        params.append(f"__global {const}{c_type(p.dtype, storage=True)}* restrict {p.name}")
    if kernel.uses_step:
        params.append("__global const ulong* restrict graphc_step_buffer")
    params += [f"const int {name}" for name in kernel.offsets]
    return ", ".join(params)


def _store(store, emitter: Emitter, dtype) -> str:
    value = emitter.value(store.value)
    if np.dtype(dtype).kind == "b":
        value = f"(uchar)({value})"
    index = render_index(store.index) + (f" + {store.offset}" if store.offset else "")
    return f"{emitter.indent}{store.buffer}[{index}] = {value};"


def render_kernel(kernel: Kernel, per_item: int = 1) -> str:
    """OpenCL C source of one kernel. With `per_item` > 1 a work item computes that many
    consecutive outputs: a loop over them (see items_loop), or for a reduction one
    accumulator each, updated together (see _lanes_lines)."""
    if per_item > 1 and kernel.reduce is not None:
        return _lanes_kernel(kernel, per_item)
    total = int(np.prod(kernel.space, dtype=np.int64))
    lines = [f"__kernel void {kernel.name}({_params(kernel)}) {{"]
    looped = per_item > 1
    lines += items_loop(total, per_item) if looped else \
        ["  const int gid = get_global_id(0);", f"  if (gid >= {total}) return;"]
    if kernel.uses_step:     # before the loop, after the guard (codegen/horizontal.py)
        lines.insert(len(lines) - looped, "  const ulong graphc_step = graphc_step_buffer[0];")
    emitter = Emitter("    " if looped else "  ")
    if kernel.reduce is not None:
        loop = Emitter("    ")
        lines += _reduce_lines(kernel.reduce, loop)
        emitter.next_temp = loop.next_temp     # loop temporaries are out of scope after it
        if kernel.reduce.combiner in ("argmax", "argmin"):
            emitter.acc = "best"                # the index, not the extreme value
    stores = _stores(kernel, emitter)
    return "\n".join(lines + emitter.lines + stores + (["  }"] if looped else []) + ["}"]) + "\n"


def _stores(kernel: Kernel, emitter: Emitter) -> list[str]:
    out_dtypes = {p.name: p.dtype for p in kernel.params}
    return [_store(s, emitter, out_dtypes[s.buffer]) for s in kernel.stores]


def _lanes_kernel(kernel: Kernel, lanes: int) -> str:
    """A reduction whose work item owns `lanes` consecutive outputs: the loop outside, an
    inner loop over the lanes the CPU compiler vectorizes (when neighbouring outputs read
    neighbouring addresses: column sums), then each output's epilogue and stores. The last
    work item's lanes start early enough to stay in bounds (a clamped index would stop the
    vectorizer) and it stores only the outputs past the previous item's."""
    total = int(np.prod(kernel.space, dtype=np.int64))
    lanes = min(lanes, total)
    first = f"min(start, {total - lanes})" if total % lanes else "start"
    lines = [f"__kernel void {kernel.name}({_params(kernel)}) {{",
             f"  const int start = get_global_id(0) * {lanes};",
             f"  if (start >= {total}) return;",
             f"  const int first = {first};"]
    if kernel.uses_step:
        lines.append("  const ulong graphc_step = graphc_step_buffer[0];")
    loop = Emitter("      ")
    lines += _lanes_lines(kernel.reduce, lanes, loop)
    emitter = Emitter("    ", first_temp=loop.next_temp)
    emitter.acc = "best[gid - first]" if kernel.reduce.combiner in ("argmax", "argmin") \
        else "acc[gid - first]"
    lines += [f"  const int end = min(start + {lanes}, {total});",
              "  for (int gid = start; gid < end; ++gid) {"]
    stores = _stores(kernel, emitter)
    return "\n".join(lines + emitter.lines + stores + ["  }", "}"]) + "\n"


def _lanes_lines(reduce, lanes: int, emitter: Emitter) -> list[str]:
    """Accumulators for `lanes` outputs from `first` on, and the loop filling them."""
    acc_type = c_type(reduce.acc_dtype)
    arg = reduce.combiner in ("argmax", "argmin")
    lines = [f"  {acc_type} acc[{lanes}];"] + ([f"  int best[{lanes}];"] if arg else [])
    init = f"acc[lane] = {_identity(reduce.combiner, reduce.acc_dtype)};"
    lines.append(f"  for (int lane = 0; lane < {lanes}; ++lane) {{ {init}"
                 + (" best[lane] = 0; }" if arg else " }"))
    lines.append(f"  {_loop_head(reduce)} {{")
    lines.append(f"    for (int lane = 0; lane < {lanes}; ++lane) {{")
    lines.append("      const int gid = first + lane;")
    value = emitter.value(reduce.body)
    lines += emitter.lines
    lines.append(_combine_line(reduce, value, "acc[lane]", "best[lane]", "      "))
    return lines + ["    }", "  }"]


def items_loop(total: int, per_item: int) -> list[str]:
    """The head of a loop over `per_item` consecutive elements per work item. On CPUs the
    compiler vectorizes this loop itself; PoCL's vectorization across the work items of a
    group fails once its SLP pass has packed similar statements of one item (the gates of an
    LSTM cell: 4x slower)."""
    return [f"  const int first = get_global_id(0) * {per_item};",
            f"  const int end = min(first + {per_item}, {total});",
            "  for (int gid = first; gid < end; ++gid) {"]


def loop_vars(reduce) -> list[tuple[str, int]]:
    """The loop variables of a reduction: one per dimension of its space (`r0`, `r1`, ...,
    skipping dimensions of extent 1), or the single `r` of a one-dimensional space."""
    if len(reduce.space) == 1:
        return [(reduce.var, reduce.space[0])]
    return [(f"{reduce.var}{i}", n) for i, n in enumerate(reduce.space) if n != 1]


def _loop_head(reduce) -> str:
    """The for statements over a reduction's loop variables, without the opening brace."""
    total = int(np.prod(reduce.space, dtype=np.int64))
    return " ".join(f"for (int {name} = 0; {name} < {extent}; ++{name})"
                    for name, extent in loop_vars(reduce)) or \
        f"for (int {reduce.var} = 0; {reduce.var} < {total}; ++{reduce.var})"


def _reduce_lines(reduce, emitter: Emitter) -> list[str]:
    acc_type = c_type(reduce.acc_dtype)
    lines = [f"  {acc_type} acc = {_identity(reduce.combiner, reduce.acc_dtype)};"]
    if reduce.combiner in ("argmax", "argmin"):
        lines.append("  int best = 0;")
    lines.append(f"  {_loop_head(reduce)} {{")
    value = emitter.value(reduce.body)
    lines += emitter.lines + [_combine_line(reduce, value)]
    lines.append("  }")
    return lines


def _combine_line(reduce, value: str, acc: str = "acc", best: str = "best",
                  indent: str = "    ") -> str:
    if reduce.combiner == "sum":
        return f"{indent}{acc} += {value};"
    # a NaN wins (the first one, for arg reductions), as in numpy; C's max and < skip it
    better = ">" if reduce.combiner in ("max", "argmax") else "<"
    position = render_index(flatten([var(n, e) for n, e in loop_vars(reduce)],
                                     [e for _, e in loop_vars(reduce)])) \
        if len(reduce.space) > 1 else reduce.var
    update = f"{{ {acc} = {value}; {best} = {position}; }}" \
        if reduce.combiner in ("argmax", "argmin") else f"{acc} = {value};"
    return f"{indent}if ({value} {better} {acc} || ({value} != {value} && {acc} == {acc})) " \
        f"{update}"


def program_source(kernel_sources: list[str], uses_random: bool) -> str:
    """One program: pragmas only for the extensions the kernels use (double, half), the
    Philox helpers when a kernel draws random numbers, erf's when a kernel calls it, then
    the kernels."""
    body = "\n".join(kernel_sources)
    header = "#pragma OPENCL EXTENSION cl_khr_fp64 : enable\n" if "double" in body else ""
    if "half" in body:
        header += "#pragma OPENCL EXTENSION cl_khr_fp16 : enable\n"
    if uses_random:
        header += resources.files("graphc.kernels_cl").joinpath("philox.cl").read_text() + "\n"
    if "graphc_erf_" in body:
        for kind in ("double", "half"):
            if f"graphc_erf_{kind}" in body:
                header += f"#define GRAPHC_ERF_{kind.upper()}\n"
        header += resources.files("graphc.kernels_cl").joinpath("erf.cl").read_text() + "\n"
    return header + body
