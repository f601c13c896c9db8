"""Render kernel IR as a GLSL 4.50 compute shader (the Vulkan backend's language).

The statements follow codegen/opencl.py's shape (SSA temporaries, the reduction loops of
codegen/loops.py, whose C spellings the program's prelude makes valid GLSL: `long`,
`fabs`, `isfinite`, INFINITY), with GLSL's own types, literals, casts, loads and stores:

- every buffer parameter is a storage buffer `b_NAME[]` at binding = its position (the
  step counter after the buffers), int offsets are push constants (or, past the device's
  push-constant bytes, a uniform buffer of ivec4s bound after the buffers);
- float16 is stored as float16_t (16-bit storage) and computed in float, rounded to half
  where an op computes it (graphc_half); bool is stored as uint8_t (8-bit storage);
- the work-item id folds a 2-D/3-D dispatch back into one (GRAPHC_GID), so a launch of more
  work groups than one dimension allows runs folded (runtime/vulkan_executable.py).

Elementwise ops render from `OpDef.templates["glsl"]` where the OpenCL spelling is not
already valid GLSL. Indices are 32-bit (GLSL subscripts are int): a wide kernel is refused
before rendering (no Vulkan binding holds 2^31 elements: maxStorageBufferRange).
"""
from __future__ import annotations

import math

import numpy as np

from graphc.codegen.index import render as render_index
from graphc.codegen.kernel import Acc, Apply, Const, IndexValue, Kernel, Load, Random, Select
from graphc.codegen.loops import lanes_lines, reduce_lines
from graphc.codegen.opencl import Emitter
from graphc.ops.registry import get_op

F16 = np.dtype(np.float16)
STORAGE = {"float16": "float16_t", "float32": "float", "float64": "double", "int32": "int",
           "int64": "int64_t", "bool": "uint8_t", "uint64": "uint64_t"}
GLSL_TYPES = {"float16": "float", "float32": "float", "float64": "double", "int32": "int",
              "int64": "int64_t", "bool": "bool"}
ROUND_HALF = "graphc_half"
ORDERED = frozenset({"less", "less_equal", "greater", "greater_equal"})


def glsl_type(dtype) -> str:
    return GLSL_TYPES[np.dtype(dtype).name]


def storage_type(dtype) -> str:
    return STORAGE[np.dtype(dtype).name]


def literal(value, dtype) -> str:
    """A GLSL literal of `dtype`."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return "true" if value else "false"
    if dtype.kind in "iu":
        if dtype.itemsize == 8:
            if int(value) == np.iinfo(np.int64).min:
                return f"({int(value) + 1}l - 1l)"
            return f"{int(value)}l"
        return f"{int(value)}"
    value = float(np.float16(value)) if dtype == F16 else float(value)
    double = dtype == np.float64
    if math.isnan(value):
        return "double(NAN)" if double else "NAN"
    if math.isinf(value):
        text = "INFINITY" if value > 0 else "(-INFINITY)"
        return f"double({text})" if double else text
    text = repr(float(np.float32(value))) if not double else repr(value)
    if "e" not in text and "." not in text:
        text += ".0"
    return f"({text}lf)" if double else f"({text})"


def rounded(text: str, dtype) -> str:
    return f"{ROUND_HALF}({text})" if np.dtype(dtype) == F16 else text


def load_text(buffer: str, index: str, dtype) -> str:
    dtype = np.dtype(dtype)
    text = f"b_{buffer}[{index}]"
    if dtype == F16:
        return f"float({text})"
    if dtype.kind == "b":
        return f"(uint({text}) != 0u)"
    return text


def store_text(buffer: str, index: str, value: str, dtype) -> str:
    dtype = np.dtype(dtype)
    if dtype == F16:
        value = f"float16_t({value})"
    elif dtype.kind == "b":
        value = f"uint8_t(({value}) ? 1 : 0)"
    return f"b_{buffer}[{index}] = {value};"


class GlslEmitter(Emitter):
    """The kernel IR's expressions as GLSL statements (see opencl.Emitter)."""

    type_name = staticmethod(glsl_type)

    def _text(self, node) -> tuple[str, str]:
        if isinstance(node, Const):
            return literal(node.value, node.dtype), ""
        if isinstance(node, Acc):
            return self.acc, ""
        if isinstance(node, Load):
            return _load(node, self.names), f"load {node.buffer}"
        if isinstance(node, IndexValue):
            return rounded(f"{glsl_type(node.dtype)}({render_index(node.index)})",
                           node.dtype), ""
        if isinstance(node, Select):
            return (f"({_conds(node.conds)}) ? {self.names[node.a]} : "
                    f"{self.names[node.b]}"), "select"
        if isinstance(node, Random):
            return _random(node), f"random {node.dist}"
        return _apply(node, [self.names[a] for a in node.args]), node.op


def _conds(conds) -> str:
    return " && ".join(f"({render_index(c.form)} {c.op} {c.bound})" for c in conds) or "true"


def _load(node: Load, names: dict) -> str:
    index = render_index(node.index) + (f" + {node.offset}" if node.offset else "")
    for expr, stride, extent in node.dynamic:
        value = f"int({names[expr]})"
        wrapped = f"({value} < 0 ? {value} + {extent} : {value})"
        index += f" + clamp({wrapped}, 0, {extent - 1}) * {stride}"
    if node.valid and node.index.bounds[0] < 0:
        index = f"max({index}, 0)"      # glslang refuses a constant negative subscript even
        #                                 where the condition never takes it
    text = load_text(node.buffer, index, node.dtype)
    if node.valid:
        text = f"(({_conds(node.valid)}) ? {text} : {literal(0, node.dtype)})"
    return text


def _apply(node: Apply, args: list[str]) -> str:
    if node.op == "cast":
        source, target = np.dtype(node.args[0].dtype), np.dtype(node.dtype)
        if target.kind == "b":
            return f"({args[0]} != {literal(0, source)})"
        if source.kind == "b":
            return f"({args[0]} ? {literal(1, target)} : {literal(0, target)})"
        return rounded(f"{glsl_type(target)}({args[0]})", target)
    if node.op in ORDERED and np.dtype(node.args[0].dtype).kind == "b":
        args = [f"int({a})" for a in args]      # GLSL orders no bools
    record = get_op(node.op)
    template = record.templates.get("glsl", record.templates["opencl"])
    return rounded(template.format(*args, T=glsl_type(node.dtype)), node.dtype)


def _random(node: Random) -> str:
    offset = f"(graphc_step * {node.blocks_per_step}ul)"
    index = f"uint64_t({render_index(node.index)})"
    seed = f"{node.seed & 0xFFFFFFFFFFFFFFFF}ul"
    a, b = (literal(p, node.dtype) for p in node.params)
    bits = "f64" if node.dtype == np.float64 else "f32"
    call = {"uniform": f"graphc_uniform_{bits}({seed}, {offset}, {index}, {a}, {b})",
            "normal": f"graphc_normal_{bits}({seed}, {offset}, {index}, {a}, {b})",
            "bernoulli": f"graphc_bernoulli_f32({seed}, {offset}, {index}, {a})"}[node.dist]
    return f"{glsl_type(node.dtype)}({call})"


def buffer_decls(kernel: Kernel) -> list[str]:
    """The storage buffers of a kernel's parameters (and the step counter), in order."""
    lines = []
    for binding, p in enumerate(kernel.params):
        access = "" if p.output else "readonly "
        lines.append(f"layout(std430, binding = {binding}) {access}buffer B{binding} "
                     f"{{ {storage_type(p.dtype)} b_{p.name}[]; }};")
    if kernel.uses_step:
        lines.append(f"layout(std430, binding = {len(kernel.params)}) readonly buffer "
                     f"BS {{ uint64_t b_graphc_step_buffer[]; }};")
    return lines


def scalar_decls(names, bindings: int, push_bytes: int) -> list[str]:
    """The int arguments: push constants when they fit `push_bytes`, else a uniform buffer
    of ivec4s at binding `bindings` (std140 pads scalar arrays to 16 bytes an element)."""
    if not names:
        return []
    if 4 * len(names) <= push_bytes:
        members = " ".join(f"int {n};" for n in names)
        return [f"layout(push_constant) uniform Scalars {{ {members} }} pc;"] + \
            [f"#define {n} pc.{n}" for n in names]
    rows = -(-len(names) // 4)
    return [f"layout(std140, binding = {bindings}) uniform Scalars {{ ivec4 s[{rows}]; }} su;"] \
        + [f"#define {n} su.s[{i // 4}][{i % 4}]" for i, n in enumerate(names)]


def kernel_text(kernel: Kernel, push_bytes: int, per_item: int = 1) -> str:
    """A GLSL compute shader (after the program's prelude) computing `kernel`: one work item
    per element of its space, or `per_item` consecutive elements (a reduction: one
    accumulator per lane, loops.lanes_lines; else a loop over the elements)."""
    total = int(np.prod(kernel.space, dtype=np.int64))
    bindings = len(kernel.params) + (1 if kernel.uses_step else 0)
    lines = buffer_decls(kernel) + scalar_decls(kernel.offsets, bindings, push_bytes)
    lines.append("void main() {")
    lanes = per_item > 1 and kernel.reduce is not None
    looped = per_item > 1 and not lanes
    if lanes:
        lanes_count = min(per_item, total)
        first = f"min(start, {total - lanes_count})" if total % lanes_count else "start"
        lines += [f"  const int start = GRAPHC_GID * {lanes_count};",
                  f"  if (start >= {total}) return;", f"  const int first = {first};"]
    elif looped:
        lines += [f"  const int first = GRAPHC_GID * {per_item};",
                  f"  if (first >= {total}) return;",
                  f"  const int end = min(first + {per_item}, {total});"]
    else:
        lines += ["  const int gid = GRAPHC_GID;", f"  if (gid >= {total}) return;"]
    if kernel.uses_step:
        lines.append("  const uint64_t graphc_step = b_graphc_step_buffer[0];")
    if looped:
        lines.append("  for (int gid = first; gid < end; ++gid) {")
    emitter = GlslEmitter("    " if lanes or looped else "  ")
    if lanes:
        loop = GlslEmitter("      ")
        lines += lanes_lines(kernel.reduce, lanes_count, loop, False)
        emitter.next_temp = loop.next_temp
        emitter.acc = "best[gid - first]" if kernel.reduce.combiner in ("argmax", "argmin") \
            else "acc[gid - first]"
        lines += [f"  const int end = min(start + {lanes_count}, {total});",
                  "  for (int gid = start; gid < end; ++gid) {"]
    elif kernel.reduce is not None:
        loop = GlslEmitter("    ")
        lines += reduce_lines(kernel.reduce, loop, False)
        emitter.next_temp = loop.next_temp
        if kernel.reduce.combiner in ("argmax", "argmin"):
            emitter.acc = "best"
    dtypes = {p.name: p.dtype for p in kernel.params}
    stores = []
    for store in kernel.stores:
        value = emitter.value(store.value)
        index = render_index(store.index) + (f" + {store.offset}" if store.offset else "")
        stores.append(emitter.indent + store_text(store.buffer, index, value,
                                                  dtypes[store.buffer]))
    lines += emitter.lines + stores + (["  }"] if lanes or looped else []) + ["}"]
    for name in kernel.offsets:
        lines.append(f"#undef {name}")
    return "\n".join(lines) + "\n"
