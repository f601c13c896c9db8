"""Ops that loop: each is a reduction over a second index space, in the kernel IR.

A `LoopSpec` says, for one op, what each work item loops over, the combiner, the body
(in terms of the output index and the loop index), and how the accumulator becomes the
op's value. Reductions, convolutions and poolings all fit; the generic code is correct
on every device, and the GEMM generator replaces the hot ones (codegen/gemm_epilogue.py,
conv_gemm.py). The lowering registry (codegen/lowerings.py) names each op's LoopSpec
builder here: builder(t, node, **attrs) -> LoopSpec.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from graphc.codegen.index import Lin, floordiv, unflatten
from graphc.codegen.kernel import Apply, Cond, Const, IndexValue, Select

F32 = np.dtype(np.float32)
I32 = np.dtype(np.int32)


@dataclass(frozen=True)
class LoopSpec:
    """How to compute one looping op's output element."""

    space: tuple[int, ...]
    combiner: str
    body: Callable          # (lowering, out_idx, loop_idx) -> Expr
    acc_dtype: np.dtype
    finish: Callable = None  # (acc_expr, out_idx) -> Expr; default: the accumulator itself


def _acc_dtype(dtype) -> np.dtype:
    """Half accumulates in float, bool in int: OpenCL's max and min take no bool."""
    return {np.dtype(np.float16): F32, np.dtype(np.bool_): I32}.get(np.dtype(dtype), dtype)


def reduction(combiner):
    def build(t, node, axes, keepdims):
        (x,) = node.inputs
        acc = _acc_dtype(t.dtype)

        def body(low, out, red):
            value = low.at(x, _merge(x.ndim, axes, keepdims, out, red))
            return value if value.dtype == acc else Apply(acc, "cast", (value,), (("dtype", acc),))
        return LoopSpec(tuple(x.shape[a] for a in axes), combiner, body, acc,
                        _cast_to(t.dtype) if acc != t.dtype else None)
    return build


def _merge(ndim, axes, keepdims, out, red) -> list:
    """The input index from an output index and a loop index over `axes`."""
    out, red = list(out), list(red)
    index = []
    for axis in range(ndim):
        if axis in axes:
            index.append(red.pop(0))
            if keepdims:
                out.pop(0)
        else:
            index.append(out.pop(0))
    return index


def _cast_to(dtype):
    return lambda acc, out: Apply(dtype, "cast", (acc,), (("dtype", dtype),))


def arg_reduction(combiner):
    def build(t, node, axis, keepdims):
        (x,) = node.inputs
        axes = tuple(range(x.ndim)) if axis is None else (axis % max(x.ndim, 1),)
        keep = keepdims and axis is not None
        acc = _acc_dtype(x.dtype)

        def body(low, out, red):
            value = low.at(x, _merge(x.ndim, axes, keep, out, red))
            return value if value.dtype == acc else Apply(acc, "cast", (value,), (("dtype", acc),))
        return LoopSpec(tuple(x.shape[a] for a in axes), combiner, body, acc,
                        lambda acc_expr, out: Apply(t.dtype, "cast", (acc_expr,),
                                                    (("dtype", t.dtype),)))
    return build


def _conv_geometry(stride, padding, dilation):
    (sh, sw), ((pt, _), (pl, _)), (dh, dw) = stride, padding, dilation
    return sh, sw, pt, pl, dh, dw


def conv2d(t, node, stride, padding, dilation, groups):
    x, w = node.inputs
    sh, sw, pt, pl, dh, dw = _conv_geometry(stride, padding, dilation)
    cig, kh, kw = w.shape[1:]
    cog = w.shape[0] // groups

    def body(low, out, red):
        n, co, oh, ow = out
        ci, i, j = red
        ih, iw, ok = _input_pixel(x.shape, oh * sh + i * dh - pt, ow * sw + j * dw - pl)
        channel = floordiv(co, cog) * cig + ci
        return Apply(t.dtype, "multiply", (low.at(x, [n, channel, ih, iw], ok),
                                           low.at(w, [co, ci, i, j])))
    return LoopSpec((cig, kh, kw), "sum", body, t.dtype)


def conv2d_grad_input(t, node, stride, padding, dilation, groups, input_shape):
    g, w = node.inputs
    sh, sw, pt, pl, dh, dw = _conv_geometry(stride, padding, dilation)
    cog, (cig, kh, kw) = w.shape[0] // groups, w.shape[1:]
    oh_max, ow_max = g.shape[2], g.shape[3]

    def body(low, out, red):
        n, c, h, x_ = out
        co_g, i, j = red
        oh, conds_h = _exact_div(h + pt - i * dh, sh, kh * dh)
        ow, conds_w = _exact_div(x_ + pl - j * dw, sw, kw * dw)
        ok = conds_h + conds_w + (Cond(oh, "<", oh_max), Cond(ow, "<", ow_max))
        ok = tuple(c for c in ok if not _always(c))
        co = floordiv(c, cig) * cog + co_g
        return Apply(t.dtype, "multiply", (low.at(g, [n, co, oh, ow], ok),
                                           low.at(w, [co, c % cig, i, j])))
    return LoopSpec((cog, kh, kw), "sum", body, t.dtype)


def _exact_div(form: Lin, divisor: int, span: int):
    """(form // divisor, conditions that form >= 0 and divides exactly)."""
    bias = -(-span // divisor) * divisor
    shifted = form + bias
    quotient = floordiv(shifted, divisor) - bias // divisor
    conds = (Cond(shifted, ">=", bias), Cond(shifted % divisor, "==", 0))
    return quotient, conds


def conv2d_grad_weight(t, node, stride, padding, dilation, groups, weight_shape):
    x, g = node.inputs
    sh, sw, pt, pl, dh, dw = _conv_geometry(stride, padding, dilation)
    cog, cig = weight_shape[0] // groups, weight_shape[1]

    def body(low, out, red):
        co, ci, i, j = out
        n, oh, ow = red
        ih, iw, ok = _input_pixel(x.shape, oh * sh + i * dh - pt, ow * sw + j * dw - pl)
        channel = floordiv(co, cog) * cig + ci
        return Apply(t.dtype, "multiply", (low.at(x, [n, channel, ih, iw], ok),
                                           low.at(g, [n, co, oh, ow])))
    return LoopSpec((g.shape[0], g.shape[2], g.shape[3]), "sum", body, t.dtype)


def _input_pixel(shape, ih: Lin, iw: Lin) -> tuple[Lin, Lin, tuple[Cond, ...]]:
    """Row and column of an NCHW input, with the conditions that they fall inside it
    (those that always hold are dropped)."""
    ok = (Cond(ih, ">=", 0), Cond(ih, "<", shape[2]), Cond(iw, ">=", 0), Cond(iw, "<", shape[3]))
    return ih, iw, tuple(c for c in ok if not _always(c))


def _window(x, out, red, stride, padding):
    n, c, oh, ow = out
    i, j = red
    ih, iw, ok = _input_pixel(x.shape, oh * stride[0] + i - padding[0],
                              ow * stride[1] + j - padding[1])
    return [n, c, ih, iw], ok


def max_pool2d(t, node, kernel, stride, padding):
    (x,) = node.inputs

    def body(low, out, red):
        index, ok = _window(x, out, red, stride, padding)
        value = low.at(x, index, ok)
        return Select(t.dtype, ok, value, Const(t.dtype, -np.inf)) if ok else value
    return LoopSpec(tuple(kernel), "max", body, t.dtype)


def avg_pool2d(t, node, kernel, stride, padding, count_include_pad):
    (x,) = node.inputs

    def body(low, out, red):
        index, ok = _window(x, out, red, stride, padding)
        return low.at(x, index, ok)

    def finish(acc, out):
        return Apply(t.dtype, "divide", (acc, _divisor(t.dtype, x.shape, out, kernel, stride,
                                                       padding, count_include_pad)))
    return LoopSpec(tuple(kernel), "sum", body, t.dtype, finish)


def _divisor(dtype, shape, out, kernel, stride, padding, count_include_pad):
    """The number of elements a window averages (PyTorch's rule)."""
    if count_include_pad:
        return Const(dtype, kernel[0] * kernel[1])
    sizes = []
    for axis, o in ((0, out[2]), (1, out[3])):
        start = o * stride[axis] - padding[axis]
        lo = Apply(I32, "maximum", (IndexValue(I32, start), Const(I32, 0)))
        hi = Apply(I32, "minimum", (IndexValue(I32, start + kernel[axis]),
                                    Const(I32, shape[2 + axis])))
        sizes.append(Apply(I32, "subtract", (hi, lo)))
    count = Apply(I32, "multiply", tuple(sizes))
    return Apply(dtype, "cast", (count,), (("dtype", dtype),))


def avg_pool2d_grad(t, node, kernel, stride, padding, count_include_pad, input_size):
    (g,) = node.inputs

    def body(low, out, red):
        n, c, h, w = out
        i, j = red
        oh, ch = _exact_div(h + padding[0] - i, stride[0], kernel[0])
        ow, cw = _exact_div(w + padding[1] - j, stride[1], kernel[1])
        ok = ch + cw + (Cond(oh, "<", g.shape[2]), Cond(ow, "<", g.shape[3]))
        ok = tuple(c for c in ok if not _always(c))
        share = Apply(t.dtype, "divide", (low.at(g, [n, c, oh, ow], ok),
                                          _divisor(t.dtype, t.shape, [n, c, oh, ow], kernel,
                                                   stride, padding, count_include_pad)))
        return Select(t.dtype, ok, share, Const(t.dtype, 0)) if ok else share
    return LoopSpec(tuple(kernel), "sum", body, t.dtype)


def take_grad(t, node, axis, shape):
    g, indices = node.inputs
    count = indices.size

    def body(low, out, red):
        (j,) = red if red else (Lin(),)
        position = low.at(indices, unflatten(j, indices.shape))
        wrapped = Apply(position.dtype, "where", (
            Apply(np.dtype(bool), "less", (position, Const(position.dtype, 0))),
            Apply(position.dtype, "add", (position, Const(position.dtype, shape[axis]))),
            position))
        hit = Apply(np.dtype(bool), "equal", (wrapped, IndexValue(position.dtype, out[axis])))
        source = list(out[:axis]) + unflatten(j, indices.shape) + list(out[axis + 1:])
        return Apply(t.dtype, "where", (hit, low.at(g, source), Const(t.dtype, 0)))
    return LoopSpec((count,), "sum", body, t.dtype)


def matmul(t, node):
    a, b = node.inputs
    k = a.shape[-1]

    def body(low, out, red):
        (r,) = red if red else (Lin(),)
        batch = out[:-2]
        ia = _batch_index(batch, a.shape, t.shape) + [out[-2], r]
        ib = _batch_index(batch, b.shape, t.shape) + [r, out[-1]]
        return Apply(t.dtype, "multiply", (low.at(a, ia), low.at(b, ib)))
    return LoopSpec((k,), "sum", body, t.dtype)


def _batch_index(batch, shape, out_shape) -> list:
    lead = len(out_shape) - len(shape)
    return [Lin() if d == 1 else batch[lead + i] for i, d in enumerate(shape[:-2])]


def _always(cond: Cond) -> bool:
    lo, hi = cond.form.bounds
    return {">=": lo >= cond.bound, "<": hi < cond.bound, "==": lo == hi == cond.bound}[cond.op]
