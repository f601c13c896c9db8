"""Reduction loops in OpenCL C: one accumulator per work item, or one per lane of outputs.

A float32 sum marked `compensated` (reductions, and the combination of their partial sums)
adds its terms in blocks of about BLOCK consecutive loop steps: each block's plain sum goes
into the running total by Neumaier's compensated addition (over more than
SECOND_ORDER_BLOCKS blocks, of the second order: the compensation's own rounding errors are
compensated too). The error then grows with the block, not with the loop: a plain float32
sum of 10^7 equal terms was off by 4e-4, of 2^31 by 60%; blocks of 32 keep both near 3e-7,
for a few operations per block. The lane form (16 outputs per work item) adds blocks of
LANES_BLOCK steps: its compensated additions, one per lane, cost it 4-5% of CPU time with
blocks of 32 (2-3% with 64), and a block of 64 equal terms is still within 6e-7. The total
and the compensations are added once, after the loop (not where the total is inf or NaN:
the compensations are NaN there).
"""
from __future__ import annotations

import numpy as np

from graphc.codegen.ctext import c_type, literal
from graphc.codegen.index import flatten, var
from graphc.codegen.index import render as render_index
from graphc.codegen.width import index_type, number

BLOCK = 32
LANES_BLOCK = 64            # the lane form's blocks (its additions per block cost 2x more)
SECOND_ORDER_BLOCKS = 4096  # past it the compensation's own errors count (below: < 3e-8)
IDENTITY = {"sum": "0", "max": "-INFINITY", "min": "INFINITY"}
F32 = np.dtype(np.float32)


def identity(combiner: str, dtype) -> str:
    """The combiner's starting value."""
    if np.dtype(dtype).kind in "iu" and combiner in ("max", "min", "argmax", "argmin"):
        info = np.iinfo(dtype)
        bound = info.min if combiner in ("max", "argmax") else info.max
        return literal(bound, dtype)
    return IDENTITY[{"argmax": "max", "argmin": "min"}.get(combiner, combiner)]


def loop_vars(reduce) -> list[tuple[str, int]]:
    """The loop variables of a reduction: one per dimension of its space (`r0`, `r1`, ...,
    skipping dimensions of extent 1), or the single `r` of a one-dimensional space."""
    if len(reduce.space) == 1:
        return [(reduce.var, reduce.space[0])]
    return [(f"{reduce.var}{i}", n) for i, n in enumerate(reduce.space) if n != 1]


def _for(name: str, start: str, bound: str, wide: bool, step: str = "++{}") -> str:
    return f"for ({index_type(wide)} {name} = {start}; {name} < {bound}; {step.format(name)})"


def loop_head(reduce, wide: bool) -> str:
    """The for statements over a reduction's loop variables, without the opening brace."""
    total = int(np.prod(reduce.space, dtype=np.int64))
    loops = [_for(name, "0", number(extent, wide), wide) for name, extent in loop_vars(reduce)]
    return " ".join(loops) or _for(reduce.var, "0", number(total, wide), wide)


def compensates(reduce, block: int = BLOCK) -> bool:
    """Is `reduce` summed in compensated blocks (a float32 sum longer than a `block`)?"""
    return reduce.compensated and reduce.combiner == "sum" and \
        np.dtype(reduce.acc_dtype) == F32 and \
        int(np.prod(reduce.space, dtype=np.int64)) > block


def blocked_heads(reduce, wide: bool, block: int = BLOCK) -> tuple[str, str, int]:
    """(outer, inner, blocks): for statements of a compensated sum, the outer ones over the
    blocks, the inner ones over one block's steps, and the number of blocks. The block is
    the innermost dimensions and a run of the next one, together at least `block` steps."""
    loops = [(name, extent) for name, extent in loop_vars(reduce)]
    inner, d = 1, len(loops) - 1
    while inner * loops[d][1] < block:
        inner *= loops[d][1]
        d -= 1
    name, extent = loops[d]
    run = -(-block // inner)
    outer = [_for(n, "0", number(e, wide), wide) for n, e in loops[:d]]
    rest = [_for(n, "0", number(e, wide), wide) for n, e in loops[d + 1:]]
    blocks = int(np.prod([e for _, e in loops[:d]], dtype=np.int64)) * -(-extent // run)
    if run >= extent:
        return " ".join(outer), " ".join([_for(name, "0", number(extent, wide), wide)] + rest), \
            blocks
    start = f"{name}_b"
    outer.append(_for(start, "0", number(extent, wide), wide, f"{{}} += {run}"))
    end = f"{start} + {run}" if extent % run == 0 else \
        f"({start} + {run} < {extent} ? {start} + {run} : {number(extent, wide)})"
    return " ".join(outer), " ".join([_for(name, start, end, wide)] + rest), blocks


def compensations(blocks: int) -> tuple[str, ...]:
    """The compensation variables a sum of `blocks` blocks keeps: the rounding errors of the
    total, and past SECOND_ORDER_BLOCKS those of that sum too (Kahan-Babuska-Klein's second
    order: over a million blocks of equal sign, the first order's own errors were 1e-4)."""
    return ("comp", "comp2") if blocks > SECOND_ORDER_BLOCKS else ("comp",)


def compensated_add(acc: str, comps: tuple[str, ...], block: str, indent: str) -> str:
    """acc + block into acc, its rounding error into comps[0] (and that addition's into
    comps[1])."""
    if len(comps) == 1:
        return (f"{indent}{{ const float s_ = {acc} + {block}; "
                f"{comps[0]} += {_error(acc, block)}; {acc} = s_; }}")
    comp, comp2 = comps
    return (f"{indent}{{ const float s_ = {acc} + {block}; const float c_ = {_error(acc, block)};"
            f" {acc} = s_; const float t_ = {comp} + c_;"
            f" {comp2} += {_error(comp, 'c_', 't_')}; {comp} = t_; }}")


def _error(a: str, b: str, total: str = "s_") -> str:
    """Neumaier: the rounding error of `total` = a + b."""
    return f"fabs({a}) >= fabs({b}) ? ({a} - {total}) + {b} : ({b} - {total}) + {a}"


def finish_compensated(acc: str, comps: tuple[str, ...], indent: str) -> str:
    """The total plus its compensations, where it is finite."""
    return f"{indent}{acc} = isfinite({acc}) ? {acc} + ({' + '.join(comps)}) : {acc};"


def _indented(lines: list[str]) -> list[str]:
    return ["  " + line for line in lines]


def _open(head: str, indent: str) -> str:
    """`head {`, or a bare block where there is no loop."""
    return f"{indent}{head} {{" if head else f"{indent}{{"


def reduce_lines(reduce, emitter, wide: bool) -> list[str]:
    """The accumulator of one output and the loop filling it."""
    acc_type = c_type(reduce.acc_dtype)
    start = identity(reduce.combiner, reduce.acc_dtype)
    if compensates(reduce):
        outer, inner, blocks = blocked_heads(reduce, wide)
        comps = compensations(blocks)
        value = emitter.value(reduce.body)
        return [f"  float acc = 0, {', '.join(c + ' = 0' for c in comps)};", _open(outer, "  "),
                "    float blk = 0;", f"    {inner} {{", *_indented(emitter.lines),
                f"      blk += {value};", "    }", compensated_add("acc", comps, "blk", "    "),
                "  }", finish_compensated("acc", comps, "  ")]
    lines = [f"  {acc_type} acc = {start};"]
    if reduce.combiner in ("argmax", "argmin"):
        lines.append(f"  {index_type(wide)} best = 0;")
    lines.append(f"  {loop_head(reduce, wide)} {{")
    value = emitter.value(reduce.body)
    lines += emitter.lines + [combine_line(reduce, value)]
    lines.append("  }")
    return lines


def lanes_lines(reduce, lanes: int, emitter, wide: bool) -> list[str]:
    """Accumulators for `lanes` outputs from `first` on, and the loop filling them."""
    acc_type = c_type(reduce.acc_dtype)
    arg = reduce.combiner in ("argmax", "argmin")
    lines = [f"  {acc_type} acc[{lanes}];"] + \
        ([f"  {index_type(wide)} best[{lanes}];"] if arg else [])
    each = f"for (int lane = 0; lane < {lanes}; ++lane)"
    gid = f"      const {index_type(wide)} gid = first + lane;"
    if compensates(reduce, LANES_BLOCK):
        outer, inner, blocks = blocked_heads(reduce, wide, LANES_BLOCK)
        comps = compensations(blocks)
        value = emitter.value(reduce.body)
        zeros = " ".join(f"{c}[lane] = 0;" for c in ("acc",) + comps)
        return lines + [f"  float {', '.join(f'{c}[{lanes}]' for c in comps)};",
                        f"  {each} {{ {zeros} }}", _open(outer, "  "), f"    float blk[{lanes}];",
                        f"    {each} blk[lane] = 0;", f"    {inner} {{", f"      {each} {{",
                        "  " + gid, *_indented(emitter.lines), f"        blk[lane] += {value};",
                        "      }", "    }", f"    {each}",
                        compensated_add("acc[lane]", tuple(f"{c}[lane]" for c in comps),
                                        "blk[lane]", "      "),
                        "  }", f"  {each}",
                        finish_compensated("acc[lane]", tuple(f"{c}[lane]" for c in comps),
                                           "    ")]
    init = f"acc[lane] = {identity(reduce.combiner, reduce.acc_dtype)};"
    lines.append(f"  {each} {{ {init}" + (" best[lane] = 0; }" if arg else " }"))
    lines.append(f"  {loop_head(reduce, wide)} {{")
    lines.append(f"    {each} {{")
    lines.append(gid)
    value = emitter.value(reduce.body)
    lines += emitter.lines
    lines.append(combine_line(reduce, value, "acc[lane]", "best[lane]", "      "))
    return lines + ["    }", "  }"]


def combine_line(reduce, value: str, acc: str = "acc", best: str = "best",
                 indent: str = "    ") -> str:
    """The statement combining one loop step's `value` into the accumulator."""
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
