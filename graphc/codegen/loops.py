"""Reduction loops in OpenCL C: one accumulator per work item, or one per lane of outputs.

A float32 sum marked `compensated` (reductions, and the combination of their partial sums)
adds its terms in blocks of about BLOCK consecutive loop steps: each block's plain sum goes
into the running total by compensated addition (Neumaier's, of the second order: the
compensation's own rounding errors are compensated too). The error then grows with the
block, not with the loop: a plain float32 sum of 10^7 equal terms was off by 4e-4, of
2^31 by 60%; blocks of 32 keep both near 3e-7, for a dozen operations per block. The
total and the compensations are added once, after the loop (not where the total is inf
or NaN: the compensations are NaN there).
"""
from __future__ import annotations

import numpy as np

from graphc.codegen.ctext import c_type, literal
from graphc.codegen.index import flatten, var
from graphc.codegen.index import render as render_index
from graphc.codegen.width import index_type, number

BLOCK = 32
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


def compensates(reduce) -> bool:
    """Is `reduce` summed in compensated blocks (a long float32 sum)?"""
    return reduce.compensated and reduce.combiner == "sum" and \
        np.dtype(reduce.acc_dtype) == F32 and \
        int(np.prod(reduce.space, dtype=np.int64)) > BLOCK


def blocked_heads(reduce, wide: bool) -> tuple[str, str]:
    """(outer, inner) for statements of a compensated sum: the outer ones run over the
    blocks, the inner ones over one block's steps. The block is the innermost dimensions
    and a run of the next one, together at least BLOCK steps."""
    loops = [(name, extent) for name, extent in loop_vars(reduce)]
    inner, d = 1, len(loops) - 1
    while inner * loops[d][1] < BLOCK:
        inner *= loops[d][1]
        d -= 1
    name, extent = loops[d]
    run = -(-BLOCK // inner)
    outer = [_for(n, "0", number(e, wide), wide) for n, e in loops[:d]]
    rest = [_for(n, "0", number(e, wide), wide) for n, e in loops[d + 1:]]
    if run >= extent:
        return " ".join(outer), " ".join([_for(name, "0", number(extent, wide), wide)] + rest)
    start = f"{name}_b"
    outer.append(_for(start, "0", number(extent, wide), wide, f"{{}} += {run}"))
    end = f"{start} + {run}" if extent % run == 0 else \
        f"({start} + {run} < {extent} ? {start} + {run} : {number(extent, wide)})"
    return " ".join(outer), " ".join([_for(name, start, end, wide)] + rest)


def compensated_add(acc: str, comp: str, comp2: str, block: str, indent: str) -> str:
    """acc + block into acc, its rounding error into comp and comp's into comp2 (the second
    order of Kahan-Babuska-Klein: over a million blocks of equal sign, comp's own rounding
    errors alone were 1e-4 of the sum)."""
    return (f"{indent}{{ const float s_ = {acc} + {block}; const float c_ = {_error(acc, block)};"
            f" {acc} = s_; const float t_ = {comp} + c_;"
            f" {comp2} += {_error(comp, 'c_', 't_')}; {comp} = t_; }}")


def _error(a: str, b: str, total: str = "s_") -> str:
    """Neumaier: the rounding error of `total` = a + b."""
    return f"fabs({a}) >= fabs({b}) ? ({a} - {total}) + {b} : ({b} - {total}) + {a}"


def finish_compensated(acc: str, comp: str, comp2: str, indent: str) -> str:
    return f"{indent}{acc} = isfinite({acc}) ? {acc} + ({comp} + {comp2}) : {acc};"


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
        outer, inner = blocked_heads(reduce, wide)
        value = emitter.value(reduce.body)
        return ["  float acc = 0, comp = 0, comp2 = 0;", _open(outer, "  "),
                "    float blk = 0;", f"    {inner} {{", *_indented(emitter.lines),
                f"      blk += {value};", "    }",
                compensated_add("acc", "comp", "comp2", "blk", "    "),
                "  }", finish_compensated("acc", "comp", "comp2", "  ")]
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
    if compensates(reduce):
        outer, inner = blocked_heads(reduce, wide)
        value = emitter.value(reduce.body)
        return lines + [f"  float comp[{lanes}], comp2[{lanes}];",
                        f"  {each} {{ acc[lane] = 0; comp[lane] = 0; comp2[lane] = 0; }}",
                        _open(outer, "  "), f"    float blk[{lanes}];",
                        f"    {each} blk[lane] = 0;", f"    {inner} {{", f"      {each} {{",
                        "  " + gid, *_indented(emitter.lines), f"        blk[lane] += {value};",
                        "      }", "    }",
                        f"    {each}", compensated_add("acc[lane]", "comp[lane]", "comp2[lane]",
                                                       "blk[lane]", "      "),
                        "  }", f"  {each}",
                        finish_compensated("acc[lane]", "comp[lane]", "comp2[lane]", "    ")]
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
