"""Hand-written kernels for ops whose loops do not fit one reduction: softmax rows,
softmax cross-entropy rows (codegen/cross_entropy.py), layer-norm rows
(codegen/layer_norm_rows.py) and max-pool routing. Each reads
materialized buffers (cross-entropy: its logits) and writes its output buffers."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphc.codegen.cross_entropy import XENT_OPS, row_kernel
from graphc.codegen.gemm_epilogue import operand_view
from graphc.codegen.layer_norm_rows import layer_norm_grad_kernel, layer_norm_kernel
from graphc.codegen.opencl import c_type
from graphc.ir import Tensor

VECTOR = {"float": 8, "double": 4}      # elements per vector (256 bits) of softmax rows
RAW_OPS = frozenset({"softmax", "log_softmax", "max_pool2d_grad", "max_pool2d_select",
                     "layer_norm", "layer_norm_grad"}) | XENT_OPS


@dataclass(frozen=True)
class RawKernel:
    """A kernel given as source: its parameters are the plan buffers `args`, in order."""

    source: str
    work_items: int
    args: tuple[str, ...]
    nodes: tuple            # the graph nodes it computes
    flops: int
    shape: tuple            # the shape its name shows
    uses_step: bool = False


def raw_kernel(name: str, stores: list[Tensor], buffer_of: dict) -> RawKernel:
    """The hand-written kernel computing `stores` (one value, or a fused cross-entropy pair)."""
    node = stores[0].producer
    if node.op in XENT_OPS:
        k = row_kernel(name, stores, buffer_of)
        return RawKernel(k.source, k.rows, k.args, k.nodes, k.flops, node.inputs[0].shape,
                         k.uses_step)
    (t,) = stores
    source, items, flops = _BUILDERS[node.op](name, t, node)
    inputs = (operand_view(i, buffer_of.__contains__)[0] for i in node.inputs)
    args = tuple(buffer_of[i] for i in inputs) + (buffer_of[t],)
    return RawKernel(source, items, args, (node,), flops, t.shape)


def _softmax(name: str, t: Tensor, node, log: bool):
    axis = node.attrs["axis"]
    shape = t.shape
    n, inner = shape[axis], int(np.prod(shape[axis + 1:], dtype=np.int64))
    rows = t.size // max(n, 1) if n else 0
    T = c_type(t.dtype)
    if inner == 1 and T in VECTOR:
        body = _contiguous_rows(T, n, log)
    else:
        body = _strided_rows(T, n, inner, log)
    source = f"""__kernel void {name}(__global const {T}* restrict x, __global {T}* restrict y) {{
  const int row = get_global_id(0);
  if (row >= {rows}) return;
  const int base = (row / {inner}) * {n * inner} + row % {inner};
{body}}}
"""
    return source, rows, 5 * t.size


def _reciprocal(T: str, log: bool) -> str:
    """softmax's `r = 1 / s` line (log_softmax has none)."""
    return "" if log else f"  const {T} r = 1 / s;\n"


def _strided_rows(T: str, n: int, inner: int, log: bool) -> str:
    """One element at a time; softmax keeps each exp in y and scales it by 1 / s after
    (exp dominates the cost)."""
    total = "s += exp(x[at] - m);" if log else \
        f"{{ const {T} e = exp(x[at] - m); y[at] = e; s += e; }}"
    finish = "y[at] = (x[at] - m) - log(s);" if log else "y[at] *= r;"
    return f"""  {T} m = -INFINITY;
  for (int i = 0; i < {n}; ++i) m = max(m, x[base + i * {inner}]);
  {T} s = 0;
  for (int i = 0; i < {n}; ++i) {{ const int at = base + i * {inner}; {total} }}
{_reciprocal(T, log)}  for (int i = 0; i < {n}; ++i) {{ const int at = base + i * {inner}; {finish} }}
"""


def _contiguous_rows(T: str, n: int, log: bool) -> str:
    """A row of consecutive elements in vectors of VECTOR[T] (PoCL does not vectorize exp
    across the work items of these loops: 49-wide rows of scores took 18 ms for 25,088
    rows one element at a time, 2 ms in vectors), the last n % VECTOR[T] one at a time."""
    width = VECTOR[T]
    V, full = f"{T}{width}", n - n % width
    load = f"vload{width}(0, x + base + i)"
    if log:
        vector_total, scalar_total = f"s{width} += exp({load} - m);", "s += exp(x[base + i] - m);"
        vector_finish = f"vstore{width}(({load} - m) - log(s), 0, y + base + i);"
        scalar_finish = "y[base + i] = (x[base + i] - m) - log(s);"
    else:
        vector_total = (f"{{ const {V} e = exp({load} - m); vstore{width}(e, 0, y + base + i);"
                        f" s{width} += e; }}")
        scalar_total = f"{{ const {T} e = exp(x[base + i] - m); y[base + i] = e; s += e; }}"
        vector_finish = (f"vstore{width}(vload{width}(0, y + base + i) * r, 0, "
                         f"y + base + i);")
        scalar_finish = "y[base + i] *= r;"
    lanes = " + ".join(f"s{width}.s{k:x}" for k in range(width))
    return f"""  {T} m = -INFINITY;
  for (int i = 0; i < {n}; ++i) m = max(m, x[base + i]);
  {V} s{width} = 0;
  {T} s = 0;
  for (int i = 0; i < {full}; i += {width}) {vector_total}
  for (int i = {full}; i < {n}; ++i) {scalar_total}
  s += {lanes};
{_reciprocal(T, log)}  for (int i = 0; i < {full}; i += {width}) {vector_finish}
  for (int i = {full}; i < {n}; ++i) {scalar_finish}
"""


def _argmax_window(T: str, shape, kernel, stride, padding) -> str:
    """C statements finding the first maximum of window (oh, ow): sets bh, bw."""
    H, W = shape[2], shape[3]
    return f"""    {T} best = -INFINITY; int bh = -1, bw = -1;
    for (int i = 0; i < {kernel[0]}; ++i) for (int j = 0; j < {kernel[1]}; ++j) {{
      const int ih = oh * {stride[0]} + i - {padding[0]}, iw = ow * {stride[1]} + j - {padding[1]};
      const {T} v = (ih >= 0 && ih < {H} && iw >= 0 && iw < {W}) ? x[plane + ih * {W} + iw] : -INFINITY;
      if (v > best || bh < 0) {{ best = v; bh = ih; bw = iw; }}
    }}
"""


def _max_pool2d_grad(name: str, t: Tensor, node):
    x, g = node.inputs
    k, s, p = node.attrs["kernel"], node.attrs["stride"], node.attrs["padding"]
    N, C, H, W = x.shape
    OH, OW = g.shape[2], g.shape[3]
    if tuple(s) == tuple(k) and tuple(p) == (0, 0) and (H, W) == (OH * k[0], OW * k[1]):
        return _tiled_max_pool2d_grad(name, t, node)
    T = c_type(t.dtype)
    source = f"""__kernel void {name}(__global const {T}* restrict x, __global const {T}* restrict g, __global {T}* restrict dx) {{
  const int gid = get_global_id(0);
  if (gid >= {t.size}) return;
  const int w = gid % {W}, h = (gid / {W}) % {H}, nc = gid / {H * W};
  const int plane = nc * {H * W};
  {T} total = 0;
  // only the windows that contain (h, w): oh * s <= h + p < oh * s + k
  const int oh_lo = max(0, (h + {p[0]} - {k[0]} + {s[0]}) / {s[0]}), oh_hi = min({OH - 1}, (h + {p[0]}) / {s[0]});
  const int ow_lo = max(0, (w + {p[1]} - {k[1]} + {s[1]}) / {s[1]}), ow_hi = min({OW - 1}, (w + {p[1]}) / {s[1]});
  for (int oh = oh_lo; oh <= oh_hi; ++oh) {{
    if (h + {p[0]} < oh * {s[0]} || h + {p[0]} >= oh * {s[0]} + {k[0]}) continue;
    for (int ow = ow_lo; ow <= ow_hi; ++ow) {{
      if (w + {p[1]} < ow * {s[1]} || w + {p[1]} >= ow * {s[1]} + {k[1]}) continue;
{_argmax_window(T, x.shape, k, s, p)}      if (bh == h && bw == w) total += g[nc * {OH * OW} + oh * {OW} + ow];
    }}
  }}
  dx[gid] = total;
}}
"""
    return source, t.size, t.size


def _tiled_max_pool2d_grad(name: str, t: Tensor, node):
    """Windows that tile the input exactly: one work item per row of windows; for each window
    it finds the first maximum and writes the gradient there and zero at the other pixels.
    (One work item per window spent more time in PoCL's work-group scheduling than in the
    arithmetic.)"""
    x, g = node.inputs
    (kh, kw), T = node.attrs["kernel"], c_type(t.dtype)
    N, C, H, W = x.shape
    OH, OW = g.shape[2], g.shape[3]
    offsets = [i * W + j for i in range(kh) for j in range(kw)]
    scan = "".join(f"    v = x[at + {o}]; best_at = v > best ? {o} : best_at; "
                   f"best = v > best ? v : best;\n" for o in offsets[1:])
    stores = "".join(f"    dx[at + {o}] = best_at == {o} ? grad : ({T})0;\n" for o in offsets)
    source = f"""__kernel void {name}(__global const {T}* restrict x, __global const {T}* restrict g, __global {T}* restrict dx) {{
  const int row = get_global_id(0);
  if (row >= {N * C * OH}) return;
  const int first = row / {OH} * {H * W} + row % {OH} * {kh * W};
  for (int ow = 0; ow < {OW}; ++ow) {{
    const int at = first + ow * {kw};
    {T} best = x[at], v;
    int best_at = 0;
{scan}    const {T} grad = g[row * {OW} + ow];
{stores}  }}
}}
"""
    return source, N * C * OH, t.size


def _max_pool2d_select(name: str, t: Tensor, node):
    x, h_in = node.inputs
    k, s, p = node.attrs["kernel"], node.attrs["stride"], node.attrs["padding"]
    N, C, H, W = x.shape
    OH, OW = t.shape[2], t.shape[3]
    T = c_type(t.dtype)
    source = f"""__kernel void {name}(__global const {T}* restrict x, __global const {T}* restrict h, __global {T}* restrict y) {{
  const int gid = get_global_id(0);
  if (gid >= {t.size}) return;
  const int ow = gid % {OW}, oh = (gid / {OW}) % {OH}, nc = gid / {OH * OW};
  const int plane = nc * {H * W};
{_argmax_window(T, x.shape, k, s, p)}  y[gid] = (bh >= 0 && bh < {H} && bw >= 0 && bw < {W}) ? h[plane + bh * {W} + bw] : ({T})0;
}}
"""
    return source, t.size, t.size


_BUILDERS = {
    "softmax": lambda name, t, node: _softmax(name, t, node, log=False),
    "log_softmax": lambda name, t, node: _softmax(name, t, node, log=True),
    "max_pool2d_grad": _max_pool2d_grad,
    "max_pool2d_select": _max_pool2d_select,
    "layer_norm": layer_norm_kernel,
    "layer_norm_grad": layer_norm_grad_kernel,
}
