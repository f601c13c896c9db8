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
    convolution, seen from its output). With `run` > 0 the columns come in runs of `run`
    along one image row (same height part, width part and position one more per column):
    the CPU template then loads vectors of columns as contiguous elements. With `krun` > 0
    the rows come in runs of `krun` (from multiples of it) likewise. `base` is a C int
    expression of `batch_`; `row` holds three C int expressions of `r` (offset, height part,
    width part), `col` three of `c`.
    """

    base: str
    row: tuple[str, str, str]
    col: tuple[str, str, str]
    height: int | None = None
    width: int | None = None
    step: tuple[int, int] = (1, 1)
    pitch: tuple[int, int] = (0, 0)
    run: int = 0
    krun: int = 0


def gather_code(name: str, operand: str, gather: Gather | None, dtype: str) -> str:
    """The C helpers of a gathered operand: `{name}_{operand}_row` and `_col` (int4 of offset,
    height and width parts), `_ok_h` and `_ok_w` (a height or width part inside the image),
    `_at` (the element's position), `_get` (the element at the sums of the parts, or zero
    outside) and `_gather` (element (r, c) from scratch)."""
    if gather is None:
        return ""
    prefix = f"{name}_{operand}"
    axes = (("h", gather.height, gather.step[0], gather.pitch[0]),
            ("w", gather.width, gather.step[1], gather.pitch[1]))
    offset = "".join(f" + {axis} / {step} * {pitch}" if step > 1 else f" + {axis} * {pitch}"
                     for axis, _, step, pitch in axes if pitch)
    return "\n".join([
        f"int4 {prefix}_row(const int r) {{ return (int4)({', '.join(gather.row)}, 0); }}",
        f"int4 {prefix}_col(const int c) {{ return (int4)({', '.join(gather.col)}, 0); }}",
        *(f"bool {prefix}_ok_{axis}(const int {axis}) {{ return {_inside(axis, bound, step)}; }}"
          for axis, bound, step, _ in axes),
        f"int {prefix}_at(const int o, const int h, const int w) {{ return o{offset}; }}",
        f"{dtype} {prefix}_get(__global const {dtype}* x, const int o, const int h, const int w)",
        f"{{\n    return ({prefix}_ok_h(h) && {prefix}_ok_w(w)) ? x[{prefix}_at(o, h, w)] "
        f": ({dtype})0;\n}}",
        f"{dtype} {prefix}_gather(__global const {dtype}* x, const int r, const int c)",
        f"{{\n    const int4 p = {prefix}_row(r), q = {prefix}_col(c);",
        f"    return {prefix}_get(x, p.x + q.x, p.y + q.y, p.z + q.z);\n}}", ""])


def run_width(gather: Gather | None, width: int, tn: int) -> int:
    """Columns the CPU template loads at once along a gather's runs of columns (tiles of
    `tn` columns in vectors of `width`): a vector, else 4 or 2 where no width is checked
    (masked runs of 4 measured slower than gathers; unmasked pairs along rows of 10 pixels
    1.4x faster); 0 where the columns are gathered one by one."""
    if gather is None or gather.run == 0 or gather.step != (1, 1):
        return 0
    widths = (width, 4, 2) if gather.width is None else (width,)
    return next((w for w in widths if gather.run % w == 0 and tn % w == 0), 0)


def row_blocks(gather: Gather | None, tn: int, kc: int) -> bool:
    """Whether the CPU template copies a gathered B as 4 x 4 blocks along runs of rows."""
    return gather is not None and gather.krun > 0 and gather.krun % 4 == 0 and \
        gather.height is None and gather.width is None and gather.step == (1, 1) and \
        tn % 4 == 0 and kc % 4 == 0


def _inside(axis: str, bound: int | None, step: int) -> str:
    """C condition that a height or width part falls inside the image and on the step."""
    checks = [f"(uint)({axis}) < {bound * step}u"] if bound is not None else []
    checks += [f"{axis} % {step} == 0"] if step > 1 else []
    return " && ".join(checks) or "true"
