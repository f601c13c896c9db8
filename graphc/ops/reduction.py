"""Reductions: reduce_sum/max/min and argmax/argmin ops; sum, mean, max, min, logsumexp.

Axes are normalized by the public functions to sorted non-negative tuples (a 0-d input has
no axes to reduce: axis 0 or -1 is accepted and reduces nothing, as a 0-d sum is itself).
Departures from numpy, all chosen for the device: an int32 sum stays int32 (numpy widens it
to int64) and a bool sum counts in int32; argmax/argmin give int32 indices; max, min, argmax
and argmin over an empty axis are a ShapeError at build time (numpy fails when it runs).
"""
from __future__ import annotations

import builtins
import operator

import numpy as np

from graphc import dtypes
from graphc.builder import apply, as_tensor, cast, op_error_text
from graphc.errors import DTypeError, ShapeError
from graphc.ir import Tensor, TensorType
from graphc.ops.registry import NonDifferentiable, OpDef, register
from graphc.shapes import normalize_axes, reduced_shape
from graphc.sites import user_site

__all__ = ["sum", "mean", "max", "min", "argmax", "argmin", "logsumexp"]

INDEX_DTYPE = dtypes.int32


# ---- shape rules ----

def _check_axes(shape: tuple[int, ...], axes: tuple[int, ...]) -> None:
    if tuple(axes) != normalize_axes(axes, len(shape)) or (not shape and axes):
        raise ShapeError(f"axes must be sorted, distinct and in range for a {len(shape)}-d"
                         f" input, got {axes!r}")


def _check_not_empty(shape: tuple[int, ...], axes: tuple[int, ...]) -> None:
    empty = [a for a in axes if shape[a] == 0]
    if empty:
        raise ShapeError(f"cannot reduce the empty axis {empty[0]} of shape {shape}: a maximum"
                         f" or minimum of no elements has no value")


def _reduce_infer(is_sum: bool):
    def infer(types, axes, keepdims):
        (x,) = types
        _check_axes(x.shape, axes)
        if is_sum and dtypes.is_bool(x.dtype):
            raise DTypeError("reduce_sum of bool: cast to an integer first (gc.sum does)")
        if not is_sum:
            _check_not_empty(x.shape, axes)
        return TensorType(reduced_shape(x.shape, axes, keepdims), x.dtype)
    return infer


def _arg_axes(ndim: int, axis: int | None) -> tuple[int, ...]:
    return tuple(range(ndim)) if axis is None else (axis,)


def _arg_infer(types, axis, keepdims):
    (x,) = types
    if axis is not None and not 0 <= axis < x.ndim:
        raise ShapeError(f"axis must be None or in [0, {x.ndim}), got {axis!r}")
    axes = _arg_axes(x.ndim, axis)
    if x.size == 0 and (axis is None or x.shape[axis] == 0):
        where = "the input" if axis is None else f"axis {axis}"
        raise ShapeError(f"{where} of shape {x.shape} is empty: there is no index to choose")
    return TensorType(reduced_shape(x.shape, axes, keepdims), INDEX_DTYPE)


# ---- numpy references ----

def _reduce_ref(fn):
    def ref(x, axes, keepdims):
        return np.asarray(fn(x, axis=axes, keepdims=keepdims)).astype(x.dtype, copy=False)
    return ref


def _arg_ref(fn):
    def ref(x, axis, keepdims):
        if axis is None:
            index = fn(x.reshape(-1))
            return np.full((1,) * x.ndim if keepdims else (), index, INDEX_DTYPE)
        return fn(x, axis=axis, keepdims=keepdims).astype(INDEX_DTYPE)
    return ref


# ---- gradient rules ----

def _keepdims_like(g: Tensor, x: Tensor, axes: tuple[int, ...], keepdims: bool) -> Tensor:
    """`g` (a reduction's output) reshaped so it broadcasts against `x`."""
    return g if keepdims else apply("reshape", [g], shape=reduced_shape(x.shape, axes, True))


def _sum_vjp(g, y, x, axes, keepdims):
    return [apply("broadcast_to", [_keepdims_like(g, x, axes, keepdims)], shape=x.shape)]


def _extremum_vjp(g, y, x, axes, keepdims):
    """Ties share the gradient evenly: g * (x == y) / (number of elements equal to y)."""
    from graphc.math import equal
    hits = cast(equal(x, _keepdims_like(y, x, axes, keepdims)), x.dtype)
    count = sum(hits, axis=axes, keepdims=True)
    return [_keepdims_like(g, x, axes, keepdims) * hits / count]


NOT_DIFF_INDEX = NonDifferentiable("integer index output")

register(OpDef("reduce_sum", "reduction", 1, ("axes", "keepdims"), _reduce_infer(True),
               _reduce_ref(np.sum), _sum_vjp, {}, "Sum over axes."))
register(OpDef("reduce_max", "reduction", 1, ("axes", "keepdims"), _reduce_infer(False),
               _reduce_ref(np.max), _extremum_vjp, {},
               "Maximum over axes; tied maxima split the gradient evenly."))
register(OpDef("reduce_min", "reduction", 1, ("axes", "keepdims"), _reduce_infer(False),
               _reduce_ref(np.min), _extremum_vjp, {},
               "Minimum over axes; tied minima split the gradient evenly."))
register(OpDef("argmax", "reduction", 1, ("axis", "keepdims"), _arg_infer,
               _arg_ref(np.argmax), NOT_DIFF_INDEX, {},
               "int32 index of the first maximum along axis (None: of the flattened input)."))
register(OpDef("argmin", "reduction", 1, ("axis", "keepdims"), _arg_infer,
               _arg_ref(np.argmin), NOT_DIFF_INDEX, {},
               "int32 index of the first minimum along axis (None: of the flattened input)."))


# ---- public functions ----

def _normalized_axes(spec: tuple[int, ...] | None, ndim: int) -> tuple[int, ...]:
    if ndim == 0 and spec is not None and not builtins.all(a in (0, -1) for a in spec):
        raise ShapeError(f"axis {spec} is out of range for a 0-d input (it takes 0 or -1)")
    return normalize_axes(spec, ndim) if ndim else ()


def _axes_for(op: str, x: Tensor, axis) -> tuple[int, ...]:
    """Normalized axes, or a ShapeError that names the op and the user's line."""
    try:
        spec = (axis,) if isinstance(axis, (int, np.integer)) else axis
        spec = spec if spec is None else tuple(operator.index(a) for a in spec)
        return _normalized_axes(spec, x.ndim)
    except (ShapeError, TypeError, ValueError) as exc:
        raise ShapeError(op_error_text(op, [x], {"axis": axis}, user_site(), str(exc))) from None


def _reduce(op: str, x, axis, keepdims: bool) -> Tensor:
    x = as_tensor(x)
    return apply(op, [x], axes=_axes_for(op, x, axis), keepdims=builtins.bool(keepdims))


def sum(x, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001 - numpy's name
    """Sum over `axis` (None: all); a bool input counts in int32."""
    x = as_tensor(x)
    return _reduce("reduce_sum", cast(x, INDEX_DTYPE) if dtypes.is_bool(x.dtype) else x,
                   axis, keepdims)


def max(x, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001 - numpy's name
    """Maximum over `axis` (None: all)."""
    return _reduce("reduce_max", x, axis, keepdims)


def min(x, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001 - numpy's name
    """Minimum over `axis` (None: all)."""
    return _reduce("reduce_min", x, axis, keepdims)


def _count(x: Tensor, axes: tuple[int, ...]) -> int:
    return int(np.prod([x.shape[a] for a in axes], dtype=np.int64))


def mean(x, axis=None, keepdims: bool = False) -> Tensor:
    """Mean over `axis`; integer and bool inputs give float32 (their sum is exact: int64,
    divided once); float16 sums in float32."""
    x = as_tensor(x)
    axes = _axes_for("mean", x, axis)
    count = float(_count(x, axes))
    if not dtypes.is_float(x.dtype):
        total = sum(cast(x, dtypes.int64), axes, keepdims)
        return cast(total, dtypes.DEFAULT_FLOAT) / count
    wide = cast(x, dtypes.float32 if x.dtype == dtypes.float16 else x.dtype)
    return cast(sum(wide, axes, keepdims) / count, x.dtype)


def _arg(op: str, x, axis, keepdims: bool) -> Tensor:
    x = as_tensor(x)
    if axis is not None:
        if not isinstance(axis, (int, np.integer)):
            problem = f"axis must be an integer or None, got {axis!r}"
            raise ShapeError(op_error_text(op, [x], {"axis": axis}, user_site(), problem))
        axes = _axes_for(op, x, axis)
        axis = axes[0] if axes else None          # a 0-d input: its only element
    return apply(op, [x], axis=axis, keepdims=builtins.bool(keepdims))


def argmax(x, axis: int | None = None, keepdims: bool = False) -> Tensor:
    """int32 index of the first maximum along `axis` (None: index into the flattened input)."""
    return _arg("argmax", x, axis, keepdims)


def argmin(x, axis: int | None = None, keepdims: bool = False) -> Tensor:
    """int32 index of the first minimum along `axis` (None: index into the flattened input)."""
    return _arg("argmin", x, axis, keepdims)


def logsumexp(x, axis=None, keepdims: bool = False) -> Tensor:
    """log(sum(exp(x))) over `axis`, computed as m + log(sum(exp(x - m))) with m the maximum."""
    from graphc.math import clip, exp, log
    x = as_tensor(x)
    x = cast(x, dtypes.DEFAULT_FLOAT) if not dtypes.is_float(x.dtype) else x
    axes = _axes_for("logsumexp", x, axis)
    # an infinite maximum would give inf - inf = nan: clamp the shift to the finite range
    limit = float(np.finfo(x.dtype).max)
    shift = clip(max(x, axes, keepdims=True), -limit, limit)
    out = log(sum(exp(x - shift), axes, keepdims=True)) + shift
    return out if keepdims else apply("reshape", [out], shape=reduced_shape(x.shape, axes, False))
