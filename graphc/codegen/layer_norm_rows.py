"""Row kernels of layer_norm and layer_norm_grad (graphc/ops/layer_norm.py).

One work item per row of the last axis: it computes the row's mean and biased variance
(two passes, for accuracy), then writes its output. Rows are contiguous, so the loops run
over vectors of VECTOR elements and the last n % VECTOR one at a time: PoCL vectorizes
these loops within a work item, not across work items (as for softmax rows, codegen/raw.py).
"""
from __future__ import annotations

from graphc.codegen.opencl import c_type
from graphc.ir import Tensor

VECTOR = {"float": 8, "double": 4}       # 256 bits; other types go one element at a time


def _loop(T: str, n: int, statement) -> str:
    """`statement(width, load, at)` over a row: vectors of VECTOR[T], then single elements;
    `load(array)` is the C expression of the current chunk of `array`, `at` its offset."""
    width = VECTOR.get(T, 1)
    full = n - n % width if width > 1 else 0
    lines = []
    if full:
        lines.append(f"  for (int i = 0; i < {full}; i += {width}) {{ "
                     f"{statement(width, lambda a: f'vload{width}(0, {a} + i)', 'i')} }}")
    if full < n:
        lines.append(f"  for (int i = {full}; i < {n}; ++i) {{ "
                     f"{statement(1, lambda a: f'{a}[i]', 'i')} }}")
    return "\n".join(lines)


def _vector(T: str, width: int) -> str:
    return T if width == 1 else f"{T}{width}"


def _lanes(name: str, width: int) -> str:
    """The sum of a vector's lanes."""
    return " + ".join(f"{name}.s{k:x}" for k in range(width)) if width > 1 else name


def _sum(T: str, n: int, total: str, term) -> str:
    """`T total` = the row's sum of `term(width, load)`, vector accumulators folded after."""
    width = VECTOR.get(T, 1)
    lines = [f"  {_vector(T, width)} {total}_v = 0;", f"  {T} {total} = 0;"]
    lines.append(_loop(T, n, lambda w, load, at: (
        f"{total}_v += {term(w, load)};" if w > 1 else f"{total} += {term(w, load)};")))
    lines.append(f"  {total} += {_lanes(f'{total}_v', width)};")
    return "\n".join(lines)


def _statistics(T: str, n: int, epsilon: float) -> str:
    """The row's mean `m` and `r` = 1 / sqrt(biased variance + epsilon)."""
    return "\n".join([
        _sum(T, n, "s", lambda w, load: load("x")),
        f"  const {T} m = s / {n};",
        _sum(T, n, "q", lambda w, load: f"(({load('x')} - m) * ({load('x')} - m))"),
        f"  const {T} r = 1 / sqrt(q / {n} + ({T}){epsilon!r});"])


def _head(name: str, T: str, args: tuple[str, ...], rows: int, n: int) -> str:
    params = ", ".join(f"__global const {T}* restrict {a}" for a in args[:-1])
    return (f"__kernel void {name}({params}, __global {T}* restrict {args[-1]}) {{\n"
            f"  const int row = get_global_id(0);\n"
            f"  if (row >= {rows}) return;\n"
            f"  x += row * {n};\n")


def _store(width: int, value: str, array: str) -> str:
    return f"vstore{width}({value}, 0, {array} + i);" if width > 1 else f"{array}[i] = {value};"


def layer_norm_kernel(name: str, t: Tensor, node):
    """y = (x - m) * r * gamma + beta, one work item per row."""
    n, T = t.shape[-1], c_type(t.dtype)
    rows = t.size // n
    body = _loop(T, n, lambda w, load, at: _store(
        w, f"({load('x')} - m) * r * {load('gamma')} + {load('beta')}", "y"))
    source = (_head(name, T, ("x", "gamma", "beta", "y"), rows, n) + f"  y += row * {n};\n"
              + _statistics(T, n, node.attrs["epsilon"]) + "\n" + body + "\n}\n")
    return source, rows, 8 * t.size


def layer_norm_grad_kernel(name: str, t: Tensor, node):
    """dx = r * (h - mean(h) - xhat * mean(h * xhat)), h = g * gamma, one work item per row."""
    n, T = t.shape[-1], c_type(t.dtype)
    rows = t.size // n

    def h(load):
        return f"({load('g')} * {load('gamma')})"

    def xhat(load):
        return f"(({load('x')} - m) * r)"

    sums = "\n".join([_sum(T, n, "a", lambda w, load: h(load)),
                      _sum(T, n, "b", lambda w, load: f"{h(load)} * {xhat(load)}"),
                      f"  a /= {n}; b /= {n};"])
    body = _loop(T, n, lambda w, load, at: _store(
        w, f"r * ({h(load)} - a - {xhat(load)} * b)", "dx"))
    source = (_head(name, T, ("x", "gamma", "g", "dx"), rows, n)
              + f"  g += row * {n}; dx += row * {n};\n"
              + _statistics(T, n, node.attrs["epsilon"]) + "\n" + sums + "\n" + body + "\n}\n")
    return source, rows, 14 * t.size
