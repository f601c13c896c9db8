"""ONNX reductions and arg-reductions.

Axes come from the attribute in older opsets and from an input in newer ones; an empty or
absent axes list reduces everything, or nothing with noop_with_empty_axes. ReduceProd has
no graphc primitive: it is exp(sum(log|x|)) with the sign from the count of negative
factors and 0 where any factor is 0.
"""
from __future__ import annotations

import numpy as np

import graphc as gc
from graphc import dtypes
from graphc.builder import cast
from graphc.ir import Tensor
from graphc.onnx.ops.elementwise import round_half_even
from graphc.onnx.ops.shape import axis_slice
from graphc.onnx.registry import NodeView, converter

REDUCE_ATTRS = ("axes", "keepdims", "noop_with_empty_axes")


def _reduce_axes(node: NodeView, x: Tensor) -> tuple[int, ...] | None:
    """The axes to reduce, or None for no reduction at all."""
    axes = node.attr("axes") if "axes" in node.attrs else node.static_ints(1, "the axes")
    if not axes:
        return None if node.attr("noop_with_empty_axes", 0) else tuple(range(x.ndim))
    return tuple(sorted({a % x.ndim for a in axes}))


def _prod(x: Tensor, axes, keepdims: bool) -> Tensor:
    wide = x.dtype if dtypes.is_float(x.dtype) else dtypes.float64
    v = cast(x, wide)
    magnitude = gc.exp(gc.sum(gc.log(gc.abs(v)), axes, keepdims))
    negatives = gc.sum(cast(v < 0, dtypes.int32), axes, keepdims)
    odd = gc.not_equal(negatives - 2 * cast(cast(negatives, wide) * 0.5, dtypes.int32), 0)
    zero = gc.max(cast(gc.equal(v, 0), dtypes.int32), axes, keepdims) > 0
    result = gc.where(zero, 0.0, gc.where(odd, -magnitude, magnitude))
    return result if dtypes.is_float(x.dtype) else cast(round_half_even(result), x.dtype)


_REDUCTIONS = {
    "ReduceSum": lambda x, a, k: gc.sum(x, a, k),
    "ReduceMean": lambda x, a, k: gc.mean(x, a, k),
    "ReduceMax": lambda x, a, k: gc.max(x, a, k),
    "ReduceMin": lambda x, a, k: gc.min(x, a, k),
    "ReduceProd": _prod,
    "ReduceL1": lambda x, a, k: gc.sum(gc.abs(x), a, k),
    "ReduceL2": lambda x, a, k: _via_float(x, lambda v: gc.sqrt(gc.sum(v * v, a, k))),
    "ReduceSumSquare": lambda x, a, k: gc.sum(x * x, a, k),
    "ReduceLogSum": lambda x, a, k: gc.log(gc.sum(x, a, k)),
    "ReduceLogSumExp": lambda x, a, k: _via_float(x, lambda v: gc.logsumexp(v, a, k)),
}


def _via_float(x: Tensor, fn) -> Tensor:
    if dtypes.is_float(x.dtype):
        return fn(x)
    return cast(round_half_even(fn(cast(x, dtypes.float64))), x.dtype)


def _reduce(node: NodeView) -> Tensor:
    x = node.input(0)
    axes = _reduce_axes(node, x)
    if axes is None:
        return x
    keepdims = bool(node.attr("keepdims", 1))
    if any(x.shape[a] == 0 for a in axes):
        return _empty_reduction(node.op_type, x, axes, keepdims)
    return _REDUCTIONS[node.op_type](x, axes, keepdims)


def _empty_reduction(op_type: str, x: Tensor, axes, keepdims: bool) -> Tensor:
    """A reduction over no elements: its identity (ONNX's empty-set results)."""
    if dtypes.is_bool(x.dtype):
        low, high = False, True
    elif dtypes.is_float(x.dtype):
        low, high = -np.inf, np.inf
    else:
        low, high = np.iinfo(x.dtype).min, np.iinfo(x.dtype).max
    fill = {"ReduceMax": low, "ReduceMin": high, "ReduceProd": 1, "ReduceLogSum": -np.inf,
            "ReduceLogSumExp": -np.inf, "ReduceMean": np.nan}.get(op_type, 0)
    shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape) if keepdims or i not in axes)
    return gc.constant(np.full(shape, fill, x.dtype))


for _op in _REDUCTIONS:
    converter(_op, attrs=REDUCE_ATTRS)(_reduce)


def _arg(fn):
    def convert(node: NodeView) -> Tensor:
        x = node.input(0)
        axis = node.attr("axis", 0) % max(x.ndim, 1)
        keepdims = bool(node.attr("keepdims", 1))
        if not node.attr("select_last_index", 0):
            return cast(fn(x, axis, keepdims), dtypes.int64)
        n = x.shape[axis]
        reversed_x = axis_slice(x, axis, n - 1, -1, -1)
        index = cast(fn(reversed_x, axis, keepdims), dtypes.int64)
        return (n - 1) - index
    return convert


converter("ArgMax", attrs=("axis", "keepdims", "select_last_index"))(_arg(gc.argmax))
converter("ArgMin", attrs=("axis", "keepdims", "select_last_index"))(_arg(gc.argmin))
