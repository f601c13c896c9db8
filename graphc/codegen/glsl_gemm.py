"""The Vulkan backend's matrix product: a register-tiled GLSL GEMM with the fused epilogue.

One work item computes a ROWS x COLS tile of C[b] = op(A[b]) @ op(B[b]): per step of the
k loop it loads ROWS values of A and COLS of B and does ROWS * COLS multiply-adds, where the
loop kernel (one output a work item) loads two values per multiply-add. On lavapipe every
storage-buffer load is a per-lane access, so loads are what a kernel pays for: measured on a
128x784 @ 784x512 product, 0.09-0.15 GFLOP/s for the loop kernel, 0.9-1.5 GFLOP/s tiled
(4 x 16 and 8 x 8 tiles alike within the machine's noise; work groups of 8). Edge tiles
clamp their loads and skip their stores outside C.

Operands are buffers read through layout flags (transposed, batch strides) or gathered
through index arithmetic (codegen/gemm_gather.py: strided views, and the convolutions'
implicit im2col, so conv2d and its gradients run here too). A split weight gradient's
partial sums are not written here: on Vulkan a gradient is not split (DeviceInfo's one
compute unit, codegen/conv_gemm.weight_split). The epilogue is the kernel IR (GemmStores),
rendered by the GLSL emitter with the accumulator of the tile's element.
"""
from __future__ import annotations

import numpy as np

from graphc.codegen.built import GemmBody, GemmStores
from graphc.codegen.glsl import GlslEmitter, store_text, storage_type
from graphc.codegen.index import render as render_index

ROWS, COLS = 4, 16
GROUP = 8
VULKAN = "vulkan"            # DeviceInfo.type of a Vulkan device (compiler.py)


def tiles(spec) -> int:
    """Work items of a GEMM: one per ROWS x COLS tile of each batch's C."""
    return spec.batch * -(-spec.m // ROWS) * -(-spec.n // COLS)


def vulkan_gemm_launch(spec) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(global size, local size) of the GLSL GEMM of `spec`."""
    return (-(-tiles(spec) // GROUP) * GROUP,), (GROUP,)


def _gather_helpers(operand: str, gather, T: str) -> list[str]:
    """GLSL functions reading element (r, c) of a gathered operand (codegen/gemm_gather.py's
    Gather: a position from a row part and a column part, zero outside the image) straight
    from its buffer `b_gemm_{operand}` (GLSL passes no buffers to functions)."""
    name = f"gather_{operand}"
    axes = (("h", gather.height, gather.step[0], gather.pitch[0]),
            ("w", gather.width, gather.step[1], gather.pitch[1]))
    offset = "".join(f" + {axis} / {step} * {pitch}" if step > 1 else f" + {axis} * {pitch}"
                     for axis, _, step, pitch in axes if pitch)
    checks = []
    for axis, bound, step, _ in axes:
        checks += [f"uint({axis}) < {bound * step}u"] if bound is not None else []
        checks += [f"{axis} % {step} == 0"] if step > 1 else []
    inside = " && ".join(checks) or "true"
    return [f"{T} {name}(const int batch_, const int r, const int c) {{",
            f"  const int o = {gather.base} + {gather.row[0]} + {gather.col[0]};",
            f"  const int h = {gather.row[1]} + {gather.col[1]};",
            f"  const int w = {gather.row[2]} + {gather.col[2]};",
            f"  return ({inside}) ? b_gemm_{operand}[o{offset}] : {T}(0);",
            "}"]


def render_gemm(body: GemmBody) -> str:
    """The GLSL compute shader of a GEMM body (after the program's prelude)."""
    spec, epilogue = body.spec, body.epilogue
    if not isinstance(epilogue, GemmStores):
        raise TypeError("the GLSL GEMM takes a GemmStores epilogue (no partial sums)")
    T = spec.dtype                                  # float | double: GLSL names them alike
    m, n, k = spec.m, spec.n, spec.k
    row_tiles, col_tiles = -(-m // ROWS), -(-n // COLS)
    a_at = (f"a0 + kk * {m} + ia[r]" if spec.a_trans else f"a0 + ia[r] * {k} + kk")
    b_at = (f"b0 + jb[c] * {k} + kk" if spec.b_trans else f"b0 + kk * {n} + jb[c]")
    a_load = f"gather_a(gb, ia[r], kk)" if spec.a_gather else f"b_gemm_a[{a_at}]"
    b_load = f"gather_b(gb, kk, jb[c])" if spec.b_gather else f"b_gemm_b[{b_at}]"
    lines = [f"layout(std430, binding = 0) readonly buffer BA {{ {T} b_gemm_a[]; }};",
             f"layout(std430, binding = 1) readonly buffer BB {{ {T} b_gemm_b[]; }};"]
    for binding, p in enumerate(epilogue.params, start=2):
        access = "" if p.output else "readonly "
        lines.append(f"layout(std430, binding = {binding}) {access}buffer E{binding} "
                     f"{{ {storage_type(p.dtype)} b_{p.name}[]; }};")
    if epilogue.uses_step:
        lines.append(f"layout(std430, binding = {2 + len(epilogue.params)}) readonly buffer "
                     f"BS {{ uint64_t b_graphc_step_buffer[]; }};")
    for operand, gather in (("a", spec.a_gather), ("b", spec.b_gather)):
        if gather is not None:
            lines += _gather_helpers(operand, gather, T)
    lines += [
        "void main() {",
        "  const int tile = GRAPHC_GID;",
        f"  if (tile >= {spec.batch * row_tiles * col_tiles}) return;",
        f"  const int gb = tile / {row_tiles * col_tiles};",
        f"  const int i0 = (tile / {col_tiles}) % {row_tiles} * {ROWS};",
        f"  const int j0 = tile % {col_tiles} * {COLS};",
        f"  const int a0 = gb * {spec.a_batch_stride}, b0 = gb * {spec.b_batch_stride};",
        f"  int ia[{ROWS}]; int jb[{COLS}];",
        f"  for (int r = 0; r < {ROWS}; ++r) ia[r] = min(i0 + r, {m - 1});",
        f"  for (int c = 0; c < {COLS}; ++c) jb[c] = min(j0 + c, {n - 1});",
        f"  {T} acc[{ROWS}][{COLS}];",
        f"  for (int r = 0; r < {ROWS}; ++r) for (int c = 0; c < {COLS}; ++c) acc[r][c] = {T}(0);",
        f"  for (int kk = 0; kk < {k}; ++kk) {{",
        f"    {T} bv[{COLS}];",
        f"    for (int c = 0; c < {COLS}; ++c) bv[c] = {b_load};",
        f"    for (int r = 0; r < {ROWS}; ++r) {{",
        f"      const {T} av = {a_load};",
        f"      for (int c = 0; c < {COLS}; ++c) acc[r][c] += av * bv[c];",
        "    }",
        "  }",
    ]
    if epilogue.uses_step:
        lines.append("  const uint64_t graphc_step = b_graphc_step_buffer[0];")
    lines += [f"  for (int r = 0; r < {ROWS}; ++r) for (int c = 0; c < {COLS}; ++c) {{",
              "    const int gi = i0 + r, gj = j0 + c;",
              f"    if (gi >= {m} || gj >= {n}) continue;"]
    if body.columns is not None:
        pitch, width = body.columns
        lines.append(f"    if (gj % {pitch} >= {width}) continue;")
    emitter = GlslEmitter("    ", comments=False)
    emitter.acc = "acc[r][c]"
    stores = []
    for param, target, value, dtype in epilogue.stores:
        stores.append("    " + store_text(param, render_index(target), emitter.value(value),
                                          np.dtype(dtype)))
    lines += emitter.lines + stores + ["  }", "}"]
    return "\n".join(lines) + "\n"
