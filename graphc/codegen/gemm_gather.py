"""Gathered GEMM operands: a matrix read through index arithmetic (implicit GEMM).

A convolution is a matrix product whose operands are views of the image, the weights or the
output gradient that no stride can describe (im2col). Instead of materializing them, the GEMM
templates read such an operand through three generated C functions: the row part and the
column part of an element's position (computed once per row and once per column of a packed
block), and the element itself from the two, zero where the window falls in the padding.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gather:
    """Element (r, c) of a gathered operand, in batch `batch_`.

    With h = row[1] + col[1] and w = row[2] + col[2], it lies at
    `base + row[0] + col[0] + (h / step[0]) * pitch[0] + (w / step[1]) * pitch[1]` (elements)
    and is zero unless 0 <= h < height * step[0] and 0 <= w < width * step[1] (a check is left
    out where that bound is None) and the steps divide h and w (the windows of a strided
    convolution, seen from its output). `base` is a C int expression of `batch_`; `row` holds
    three C int expressions of `r` (offset, height part, width part), `col` three of `c`.
    """

    base: str
    row: tuple[str, str, str]
    col: tuple[str, str, str]
    height: int | None = None
    width: int | None = None
    step: tuple[int, int] = (1, 1)
    pitch: tuple[int, int] = (0, 0)


def gather_code(name: str, operand: str, gather: Gather | None, dtype: str) -> str:
    """The C helpers of a gathered operand: `{name}_{operand}_row` and `_col` (int4 of offset,
    height and width parts), `_get` (the element at their sums, or zero outside) and `_gather`
    (element (r, c) from scratch)."""
    if gather is None:
        return ""
    prefix = f"{name}_{operand}"
    axes = (("h", gather.height, gather.step[0], gather.pitch[0]),
            ("w", gather.width, gather.step[1], gather.pitch[1]))
    checks = [f"(uint)({axis}) < {bound * step}u" for axis, bound, step, _ in axes
              if bound is not None]
    checks += [f"{axis} % {step} == 0" for axis, _, step, _ in axes if step > 1]
    offset = "".join(f" + {axis} / {step} * {pitch}" if step > 1 else f" + {axis} * {pitch}"
                     for axis, _, step, pitch in axes if pitch)
    value = f"x[o{offset}]"
    if checks:
        value = f"({' && '.join(checks)}) ? {value} : ({dtype})0"
    return "\n".join([
        f"int4 {prefix}_row(const int r) {{ return (int4)({', '.join(gather.row)}, 0); }}",
        f"int4 {prefix}_col(const int c) {{ return (int4)({', '.join(gather.col)}, 0); }}",
        f"{dtype} {prefix}_get(__global const {dtype}* x, const int o, const int h, const int w)",
        f"{{\n    return {value};\n}}",
        f"{dtype} {prefix}_gather(__global const {dtype}* x, const int r, const int c)",
        f"{{\n    const int4 p = {prefix}_row(r), q = {prefix}_col(c);",
        f"    return {prefix}_get(x, p.x + q.x, p.y + q.y, p.z + q.z);\n}}", ""])
