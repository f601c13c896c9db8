"""Row kernels of layer_norm and layer_norm_grad (graphc/ops/layer_norm.py).

One work item per row of the last axis: it computes the row's mean and biased variance
(two passes, for accuracy), then writes its output. Rows are contiguous, so float and
double rows run over vectors of VECTOR elements, the last n % VECTOR one at a time: PoCL
vectorizes these loops within a work item, not across work items (as for softmax rows,
codegen/raw.py). float16 (stored as half) and 64-bit indices go one element at a time.
`c` is raw.py's text helper (compute, storage and index types; loads and stores); the
launch geometry is the lowering registry's (codegen/lowerings.py).
"""
from __future__ import annotations

from graphc.ir import Tensor

VECTOR = {"float": 8, "double": 4}       # elements per 256-bit vector of a storage type


def _width(c) -> int:
    return VECTOR.get(c.storage, 1) if not c.wide else 1


def _loop(c, n: int, statement) -> str:
    """`statement(width, load)` over a row: vectors, then single elements; `load(array)`
    is the C expression of the current chunk of `array` (in the compute type)."""
    width, I = _width(c), c.index
    full = n - n % width if width > 1 else 0
    lines = []
    if full:
        lines.append(f"  for ({I} i = 0; i < {full}; i += {width}) {{ "
                     f"{statement(width, lambda a: f'vload{width}(0, {a} + i)')} }}")
    if full < n:
        lines.append(f"  for ({I} i = {full}; i < {n}; ++i) {{ "
                     f"{statement(1, lambda a: c.ld(a, 'i'))} }}")
    return "\n".join(lines)


def _sum(c, n: int, total: str, term) -> str:
    """`T total` = the row's sum of `term(load)`, vector accumulators folded after."""
    T, width = c.compute, _width(c)
    lines = [f"  {T} {total} = 0;"]
    if width > 1:
        lines.insert(0, f"  {T}{width} {total}_v = 0;")
    lines.append(_loop(c, n, lambda w, load: (
        f"{total}_v += {term(load)};" if w > 1 else f"{total} += {term(load)};")))
    if width > 1:
        lines.append(f"  {total} += " + " + ".join(f"{total}_v.s{k:x}" for k in range(width))
                     + ";")
    return "\n".join(lines)


def _statistics(c, n: int, epsilon: float) -> str:
    """The row's mean `m` and `r` = 1 / sqrt(biased variance + epsilon)."""
    T = c.compute
    return "\n".join([
        _sum(c, n, "s", lambda load: load("x")),
        f"  const {T} m = s / {n};",
        _sum(c, n, "q", lambda load: f"(({load('x')} - m) * ({load('x')} - m))"),
        f"  const {T} r = 1 / sqrt(q / {n} + ({T}){epsilon!r});"])


def _head(name: str, c, args: tuple[str, ...], rows: int, n: int) -> str:
    S, I = c.storage, c.index
    params = ", ".join(f"__global const {S}* restrict {a}" for a in args[:-1])
    offsets = " ".join(f"{a} += row * {n};" for a in args if a not in ("gamma", "beta"))
    return (f"__kernel void {name}({params}, __global {S}* restrict {args[-1]}) {{\n"
            f"  const {I} row = get_global_id(0);\n"
            f"  if (row >= {rows}) return;\n"
            f"  {offsets}\n")


def _store(c, width: int, value: str, array: str) -> str:
    return f"vstore{width}({value}, 0, {array} + i);" if width > 1 else c.st(array, "i", value)


def layer_norm_kernel(name: str, t: Tensor, node, c) -> str:
    """y = (x - m) * r * gamma + beta, one work item per row."""
    n = t.shape[-1]
    rows = t.size // n
    body = _loop(c, n, lambda w, load: _store(
        c, w, f"({load('x')} - m) * r * {load('gamma')} + {load('beta')}", "y"))
    return (_head(name, c, ("x", "gamma", "beta", "y"), rows, n)
            + _statistics(c, n, node.attrs["epsilon"]) + "\n" + body + "\n}\n")


def layer_norm_grad_kernel(name: str, t: Tensor, node, c) -> str:
    """dx = r * (h - mean(h) - xhat * mean(h * xhat)), h = g * gamma, one work item per row."""
    n = t.shape[-1]
    rows = t.size // n

    def h(load):
        return f"({load('g')} * {load('gamma')})"

    def xhat(load):
        return f"(({load('x')} - m) * r)"

    sums = "\n".join([_sum(c, n, "a", h),
                      _sum(c, n, "b", lambda load: f"{h(load)} * {xhat(load)}"),
                      f"  a /= {n}; b /= {n};"])
    body = _loop(c, n, lambda w, load: _store(
        c, w, f"r * ({h(load)} - a - {xhat(load)} * b)", "dx"))
    return (_head(name, c, ("x", "gamma", "g", "dx"), rows, n)
            + _statistics(c, n, node.attrs["epsilon"]) + "\n" + sums + "\n" + body + "\n}\n")
