"""Hand-written OpenCL kernels for ops whose loops do not fit one reduction: softmax rows,
layer-norm rows (codegen/layer_norm_rows.py) and max-pool routing (the softmax cross-entropy
rows: codegen/opencl_rows.py). Each reads materialized buffers and writes its output buffer.
Their launch geometry is data (codegen/lowerings.py); `render_raw` renders a RawBody."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphc.codegen.built import RawBody
from graphc.codegen.ctext import c_type, load_text, rounded, store_text
from graphc.codegen.layer_norm_rows import VECTOR, layer_norm_grad_kernel, layer_norm_kernel
from graphc.codegen.lowerings import softmax_rows, tiles_exactly
from graphc.codegen.width import index_type
from graphc.ir import Tensor


@dataclass(frozen=True)
class _Text:
    """How a hand-written kernel spells its element type, indices, loads and stores (float16
    is stored as half and computed in float; `wide`: 64-bit indices)."""

    dtype: np.dtype
    wide: bool

    @property
    def compute(self) -> str:
        """The C type values are computed in (`T` in the templates)."""
        return c_type(self.dtype)

    @property
    def storage(self) -> str:
        """The C type of the buffers' elements (`S`)."""
        return c_type(self.dtype, storage=True)

    @property
    def index(self) -> str:
        """The C type of indices (`I`)."""
        return index_type(self.wide)

    def ld(self, buffer: str, index: str) -> str:
        return load_text(buffer, index, self.dtype)

    def st(self, buffer: str, index: str, value: str) -> str:
        return store_text(buffer, index, rounded(value, self.dtype), self.dtype)


def _softmax(name: str, t: Tensor, node, c: _Text, log: bool):
    axis = node.attrs["axis"]
    shape = t.shape
    n, inner = shape[axis], int(np.prod(shape[axis + 1:], dtype=np.int64))
    rows = softmax_rows(t, axis)
    T, I = c.compute, c.index
    if inner == 1 and c.storage in VECTOR and not c.wide:
        body = _contiguous_rows(T, n, log)
    else:
        body = _strided_rows(c, n, inner, log)
    source = f"""__kernel void {name}(__global const {c.storage}* restrict x, __global {c.storage}* restrict y) {{
  const {I} row = get_global_id(0);
  if (row >= {rows}) return;
  const {I} base = (row / {inner}) * {n * inner} + row % {inner};
{body}}}
"""
    return source


def _strided_rows(c: _Text, n: int, inner: int, log: bool) -> str:
    """One element at a time (any layout, half storage, 64-bit indices)."""
    T, I = c.compute, c.index
    finish = "(v - m) - log(s)" if log else "exp(v - m) / s"
    at = f"base + i * {inner}"
    return f"""  {T} m = -INFINITY;
  for ({I} i = 0; i < {n}; ++i) m = max(m, {c.ld("x", at)});
  {T} s = 0;
  for ({I} i = 0; i < {n}; ++i) s += exp({c.ld("x", at)} - m);
  for ({I} i = 0; i < {n}; ++i) {{
    const {T} v = {c.ld("x", at)};
    {c.st("y", at, finish)}
  }}
"""


def _contiguous_rows(T: str, n: int, log: bool) -> str:
    """A row of consecutive float or double elements in vectors of VECTOR[T], the last
    n % VECTOR[T] one at a time; softmax computes each exp once, keeps it in y and scales
    it by 1 / s after. (PoCL does not vectorize exp across the work items of these loops:
    49-wide rows of scores took 40 ms for 25,088 rows one element at a time, 3.4 ms so.)"""
    width = VECTOR[T]
    V, full = f"{T}{width}", n - n % width
    load = f"vload{width}(0, x + base + i)"
    if log:
        vector_total = f"s{width} += exp({load} - m);"
        scalar_total = "s += exp(x[base + i] - m);"
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
    reciprocal = "" if log else f"  const {T} r = 1 / s;\n"
    return f"""  {T} m = -INFINITY;
  for (int i = 0; i < {n}; ++i) m = max(m, x[base + i]);
  {V} s{width} = 0;
  {T} s = 0;
  for (int i = 0; i < {full}; i += {width}) {vector_total}
  for (int i = {full}; i < {n}; ++i) {scalar_total}
  s += {lanes};
{reciprocal}  for (int i = 0; i < {full}; i += {width}) {vector_finish}
  for (int i = {full}; i < {n}; ++i) {scalar_finish}
"""


def _argmax_window(c: _Text, shape, kernel, stride, padding) -> str:
    """C statements finding the first maximum of window (oh, ow): sets bh, bw."""
    H, W = shape[2], shape[3]
    T, I = c.compute, c.index
    return f"""    {T} best = -INFINITY; {I} bh = -1, bw = -1;
    for ({I} i = 0; i < {kernel[0]}; ++i) for ({I} j = 0; j < {kernel[1]}; ++j) {{
      const {I} ih = oh * {stride[0]} + i - {padding[0]}, iw = ow * {stride[1]} + j - {padding[1]};
      const {T} v = (ih >= 0 && ih < {H} && iw >= 0 && iw < {W}) ? {c.ld("x", f"plane + ih * {W} + iw")} : -INFINITY;
      if (v > best || bh < 0) {{ best = v; bh = ih; bw = iw; }}
    }}
"""


def _max_pool2d_grad(name: str, t: Tensor, node, c: _Text):
    x, g = node.inputs
    k, s, p = node.attrs["kernel"], node.attrs["stride"], node.attrs["padding"]
    N, C, H, W = x.shape
    OH, OW = g.shape[2], g.shape[3]
    if tiles_exactly(node):
        return _tiled_max_pool2d_grad(name, t, node, c)
    T, S, I = c.compute, c.storage, c.index
    source = f"""__kernel void {name}(__global const {S}* restrict x, __global const {S}* restrict g, __global {S}* restrict dx) {{
  const {I} gid = get_global_id(0);
  if (gid >= {t.size}) return;
  const {I} w = gid % {W}, h = (gid / {W}) % {H}, nc = gid / {H * W};
  const {I} plane = nc * {H * W};
  {T} total = 0;
  // only the windows that contain (h, w): oh * s <= h + p < oh * s + k
  const {I} oh_lo = max(({I})0, (h + {p[0]} - {k[0]} + {s[0]}) / {s[0]}), oh_hi = min(({I}){OH - 1}, (h + {p[0]}) / {s[0]});
  const {I} ow_lo = max(({I})0, (w + {p[1]} - {k[1]} + {s[1]}) / {s[1]}), ow_hi = min(({I}){OW - 1}, (w + {p[1]}) / {s[1]});
  for ({I} oh = oh_lo; oh <= oh_hi; ++oh) {{
    if (h + {p[0]} < oh * {s[0]} || h + {p[0]} >= oh * {s[0]} + {k[0]}) continue;
    for ({I} ow = ow_lo; ow <= ow_hi; ++ow) {{
      if (w + {p[1]} < ow * {s[1]} || w + {p[1]} >= ow * {s[1]} + {k[1]}) continue;
{_argmax_window(c, x.shape, k, s, p)}      if (bh == h && bw == w) total += {c.ld("g", f"nc * {OH * OW} + oh * {OW} + ow")};
    }}
  }}
  {c.st("dx", "gid", "total")}
}}
"""
    return source


def _tiled_max_pool2d_grad(name: str, t: Tensor, node, c: _Text):
    """Windows that tile the input exactly: one work item per row of windows; for each window
    it finds the first maximum and writes the gradient there and zero at the other pixels.
    (One work item per window spent more time in PoCL's work-group scheduling than in the
    arithmetic.)"""
    x, g = node.inputs
    (kh, kw), T, S, I = node.attrs["kernel"], c.compute, c.storage, c.index
    N, C, H, W = x.shape
    OH, OW = g.shape[2], g.shape[3]
    offsets = [i * W + j for i in range(kh) for j in range(kw)]
    scan = "".join(f"    v = {c.ld('x', f'at + {o}')}; best_at = v > best ? {o} : best_at; "
                   f"best = v > best ? v : best;\n" for o in offsets[1:])
    stores = "".join(f"    {c.st('dx', f'at + {o}', f'best_at == {o} ? grad : ({T})0')}\n"
                     for o in offsets)
    source = f"""__kernel void {name}(__global const {S}* restrict x, __global const {S}* restrict g, __global {S}* restrict dx) {{
  const {I} row = get_global_id(0);
  if (row >= {N * C * OH}) return;
  const {I} first = row / {OH} * {H * W} + row % {OH} * {kh * W};
  for ({I} ow = 0; ow < {OW}; ++ow) {{
    const {I} at = first + ow * {kw};
    {T} best = {c.ld("x", "at")}, v;
    int best_at = 0;
{scan}    const {T} grad = {c.ld("g", f"row * {OW} + ow")};
{stores}  }}
}}
"""
    return source


def _max_pool2d_select(name: str, t: Tensor, node, c: _Text):
    x, h_in = node.inputs
    k, s, p = node.attrs["kernel"], node.attrs["stride"], node.attrs["padding"]
    N, C, H, W = x.shape
    OH, OW = t.shape[2], t.shape[3]
    T, S, I = c.compute, c.storage, c.index
    picked = f"(bh >= 0 && bh < {H} && bw >= 0 && bw < {W}) ? " \
        f"{c.ld('h', f'plane + bh * {W} + bw')} : ({T})0"
    source = f"""__kernel void {name}(__global const {S}* restrict x, __global const {S}* restrict h, __global {S}* restrict y) {{
  const {I} gid = get_global_id(0);
  if (gid >= {t.size}) return;
  const {I} ow = gid % {OW}, oh = (gid / {OW}) % {OH}, nc = gid / {OH * OW};
  const {I} plane = nc * {H * W};
{_argmax_window(c, x.shape, k, s, p)}  {c.st("y", "gid", picked)}
}}
"""
    return source


def _pool_rows(name: str, t: Tensor, node, c: _Text):
    """max_pool2d / avg_pool2d whose windows tile the input exactly (codegen/pool_rows.py):
    one work item per row of windows, the window's offsets constants. The maximum is NaN
    when any element is, as the loop kernel's; the average sums the window in the loop
    kernel's order and divides by its size."""
    (x,) = node.inputs
    (kh, kw), T, S, I = node.attrs["kernel"], c.compute, c.storage, c.index
    N, C, H, W = x.shape
    OH, OW = t.shape[2], t.shape[3]
    offsets = [i * W + j for i in range(kh) for j in range(kw)]
    if node.op == "max_pool2d":
        start = f"{T} acc = -INFINITY, v;"
        steps = "".join(f"      v = {c.ld('x', f'at + {o}')}; "
                        f"if (v > acc || (v != v && acc == acc)) acc = v;\n" for o in offsets)
        result = "acc"
    else:
        start = f"{T} acc = 0;"
        steps = "".join(f"      acc += {c.ld('x', f'at + {o}')};\n" for o in offsets)
        result = f"acc / ({T}){kh * kw}"
    return f"""__kernel void {name}(__global const {S}* restrict x, __global {S}* restrict y) {{
  const {I} row = get_global_id(0);
  if (row >= {N * C * OH}) return;
  const {I} first = row / {OH} * {H * W} + row % {OH} * {kh * W};
  for ({I} ow = 0; ow < {OW}; ++ow) {{
      const {I} at = first + ow * {kw};
      {start}
{steps}      {c.st("y", f"row * {OW} + ow", result)}
  }}
}}
"""


def _avg_pool2d_grad_rows(name: str, t: Tensor, node, c: _Text):
    """avg_pool2d's gradient where the windows tile the input exactly: one work item per row
    of windows spreads each window's gradient over its pixels."""
    (g,) = node.inputs
    (kh, kw), T, S, I = node.attrs["kernel"], c.compute, c.storage, c.index
    N, C, H, W = t.shape
    OH, OW = g.shape[2], g.shape[3]
    offsets = [i * W + j for i in range(kh) for j in range(kw)]
    stores = "".join(f"      {c.st('dx', f'at + {o}', 'share')}\n" for o in offsets)
    return f"""__kernel void {name}(__global const {S}* restrict g, __global {S}* restrict dx) {{
  const {I} row = get_global_id(0);
  if (row >= {N * C * OH}) return;
  const {I} first = row / {OH} * {H * W} + row % {OH} * {kh * W};
  for ({I} ow = 0; ow < {OW}; ++ow) {{
      const {I} at = first + ow * {kw};
      const {T} share = {c.ld("g", f"row * {OW} + ow")} / ({T}){kh * kw};
{stores}  }}
}}
"""


TEMPLATES = {
    "softmax": lambda name, t, node, c: _softmax(name, t, node, c, log=False),
    "log_softmax": lambda name, t, node, c: _softmax(name, t, node, c, log=True),
    "max_pool2d_grad": _max_pool2d_grad,
    "max_pool2d_select": _max_pool2d_select,
    "layer_norm": layer_norm_kernel,
    "layer_norm_grad": layer_norm_grad_kernel,
    "max_pool2d_rows": _pool_rows,
    "avg_pool2d_rows": _pool_rows,
    "avg_pool2d_grad_rows": _avg_pool2d_grad_rows,
}


def render_raw(body: RawBody, name: str) -> str:
    """The OpenCL C source of a hand-written kernel named `name`."""
    return TEMPLATES[body.op](name, body.out, body.node, _Text(body.out.dtype, body.wide))
