"""Indexing ops: strided slices, numpy basic indexing (`x[...]`), and `take` (gather).

`slice` attrs follow `range()`, not Python slices: along each axis the output holds
`range(start, stop, step)`, so a negative step that runs down to index 0 has stop -1.
Public code builds them through `slice_tensor`, which canonicalizes them (equal slices
compare equal for CSE). Gradients scatter back: `pad` for unit steps, `slice_grad`
otherwise; `take`'s gradient is `take_grad`, a scatter-add. Each scatter's own gradient
is the gather again, so higher orders work.

`take` indices follow numpy.take: [-n, n) along an axis of size n, a negative one counting
from the end (on devices too). Outside that range: constant indices are a ShapeError at
build time, and so is taking any index from an empty axis (shapes are static); fed indices
make the interpreter and GRAPHC_CHECK_NUMERICS / GRAPHC_VALIDATE raise IndexRangeError
naming the op, the value, its position and the user's line. A device run without checking
has no error channel: it clamps the index to [0, n) (take) or drops it (take_grad), and
never reads or writes outside a buffer.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from graphc import dtypes
from graphc.builder import apply, as_tensor, op_error_text
from graphc.errors import DTypeError, ShapeError
from graphc.ir import Tensor, TensorType
from graphc.ops.registry import IndexRange, OpDef, register
from graphc.shapes import normalize_axis
from graphc.sites import user_site

__all__ = ["getitem", "take"]

Triple = tuple[int, int, int]


def argument_error(op: str, inputs: Sequence[Tensor], problem: str, cls=ShapeError,
                   **attrs) -> Exception:
    """An error about a public function's arguments, worded like `apply`'s build errors."""
    return cls(op_error_text(op, inputs, attrs, user_site(), problem))


# ---- slice ----

def _range_length(start: int, stop: int, step: int) -> int:
    return len(range(start, stop, step))


def _check_axis_slice(axis: int, dim: int, start: int, stop: int, step: int) -> int:
    if step == 0:
        raise ShapeError(f"axis {axis}: slice step cannot be zero")
    length = _range_length(start, stop, step)
    last = start + (length - 1) * step
    if length and not (0 <= start < dim and 0 <= last < dim):
        raise ShapeError(f"axis {axis}: range({start}, {stop}, {step}) leaves [0, {dim})")
    return length


def sliced_shape(shape: Sequence[int], starts, stops, steps) -> tuple[int, ...]:
    """The shape `slice` gives; ShapeError when the attrs do not fit `shape`."""
    if not len(starts) == len(stops) == len(steps) == len(shape):
        raise ShapeError(f"needs one (start, stop, step) per axis of a {len(shape)}-d input,"
                         f" got {len(starts)}, {len(stops)}, {len(steps)}")
    return tuple(_check_axis_slice(axis, dim, *triple)
                 for axis, (dim, triple) in enumerate(zip(shape, zip(starts, stops, steps))))


def _python_slice(start: int, stop: int, step: int) -> slice:
    """The Python slice selecting range(start, stop, step) of a non-negative index space."""
    length = _range_length(start, stop, step)
    if length == 0:
        return slice(0, 0)
    end = start + length * step
    return slice(start, end if end >= 0 else None, step)


def _slices(starts, stops, steps) -> tuple[slice, ...]:
    return tuple(_python_slice(*triple) for triple in zip(starts, stops, steps))


def _slice_infer(types, starts, stops, steps):
    (x,) = types
    return TensorType(sliced_shape(x.shape, starts, stops, steps), x.dtype)


def _slice_ref(x, starts, stops, steps):
    return x[_slices(starts, stops, steps)]


def _slice_vjp(g, y, x, starts, stops, steps):
    if x.ndim == 0:
        return [g]
    if all(step == 1 for step in steps):
        begins = [_canonical(triple)[0] for triple in zip(starts, stops, steps)]
        widths = tuple((int(b), int(dim - b - n)) for b, dim, n in zip(begins, x.shape, y.shape))
        return [apply("pad", [g], pad_width=widths, value=g.dtype.type(0).item())]
    attrs = dict(starts=starts, stops=stops, steps=steps, shape=x.shape)
    return [apply("slice_grad", [g], **attrs)]


register(OpDef("slice", "movement", 1, ("starts", "stops", "steps"), _slice_infer, _slice_ref,
               _slice_vjp, {},
               "Strided slice: range(start, stop, step) along every axis."))


def _slice_grad_infer(types, starts, stops, steps, shape):
    (g,) = types
    expected = sliced_shape(shape, starts, stops, steps)
    if g.shape != expected:
        raise ShapeError(f"cotangent of shape {g.shape} does not fit a slice of shape {expected}")
    return TensorType(tuple(shape), g.dtype)


def _slice_grad_ref(g, starts, stops, steps, shape):
    out = np.zeros(shape, g.dtype)
    out[_slices(starts, stops, steps)] = g
    return out


def _slice_grad_vjp(gg, y, g, starts, stops, steps, shape):
    return [apply("slice", [gg], starts=starts, stops=stops, steps=steps)]


register(OpDef("slice_grad", "movement", 1, ("starts", "stops", "steps", "shape"),
               _slice_grad_infer, _slice_grad_ref, _slice_grad_vjp,
               {},
               "Zeros of `shape` with the input written at a strided slice (slice's gradient)."))


def _canonical(triple: Triple) -> Triple:
    length = _range_length(*triple)
    start, _, step = triple
    return (start, start + length * step, step) if length else (0, 0, 1)


def slice_tensor(x: Tensor, starts, stops, steps) -> Tensor:
    """A `slice` node with canonical attrs (range semantics, see the module doc)."""
    triples = [_canonical((int(a), int(b), int(c))) for a, b, c in zip(starts, stops, steps)]
    starts, stops, steps = (tuple(t[i] for t in triples) for i in range(3))
    return apply("slice", [x], starts=starts, stops=stops, steps=steps)


# ---- numpy basic indexing ----

_ADVANCED_HINT = "advanced indexing is not supported; use gc.take(x, indices, axis) to gather"


def is_int_like(item) -> bool:
    """A Python or numpy integer, not a bool."""
    return isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_))


def _check_item(x: Tensor, item) -> None:
    if item is None or item is Ellipsis or is_int_like(item):
        return
    if isinstance(item, slice):
        parts = (item.start, item.stop, item.step)
        if all(p is None or is_int_like(p) for p in parts):
            return
        raise argument_error("getitem", [x], f"slice bounds must be ints or None, got {item}",
                             TypeError)
    kind = type(item).__name__
    raise argument_error("getitem", [x], f"index of type {kind}: {_ADVANCED_HINT}", TypeError)


def _expand_ellipsis(x: Tensor, items: tuple) -> tuple:
    for item in items:
        _check_item(x, item)
    used = sum(1 for item in items if item is not None and item is not Ellipsis)
    if used > x.ndim:
        raise argument_error("getitem", [x], f"too many indices: {used} for a {x.ndim}-d tensor")
    ellipses = [i for i, item in enumerate(items) if item is Ellipsis]
    if len(ellipses) > 1:
        raise argument_error("getitem", [x], "an index can have only one Ellipsis (...)")
    at = ellipses[0] if ellipses else len(items)
    return items[:at] + (slice(None),) * (x.ndim - used) + items[at + 1:]


def _int_triple(x: Tensor, axis: int, index: int) -> Triple:
    dim = x.shape[axis]
    if not -dim <= index < dim:
        raise argument_error("getitem", [x], f"index {index} is out of range for axis {axis}"
                                             f" of size {dim}")
    index %= dim
    return (index, index + 1, 1)


def _basic_plan(x: Tensor, items: tuple) -> tuple[list[Triple], list[int]]:
    """Per input axis a range triple, and the output shape after ints and Nones."""
    triples: list[Triple] = []
    out_shape: list[int] = []
    for item in items:
        if item is None:
            out_shape.append(1)
            continue
        axis = len(triples)
        if isinstance(item, slice):
            if item.step == 0:
                raise argument_error("getitem", [x], f"axis {axis}: slice step cannot be zero")
            triples.append(item.indices(x.shape[axis]))
            out_shape.append(_range_length(*triples[-1]))
        else:
            triples.append(_int_triple(x, axis, int(item)))
    return triples, out_shape


def getitem(x: Tensor, index) -> Tensor:
    """numpy basic indexing: ints, slices (any step), None, Ellipsis, and tuples of those."""
    x = as_tensor(x)
    items = _expand_ellipsis(x, index if isinstance(index, tuple) else (index,))
    triples, out_shape = _basic_plan(x, items)
    if any(_canonical(t) != (0, dim, 1) for t, dim in zip(triples, x.shape)):
        x = slice_tensor(x, *zip(*triples))
    if x.shape != tuple(out_shape):
        x = apply("reshape", [x], shape=tuple(out_shape))
    return x


# ---- take (gather) and its scatter-add gradient ----

def _take_shape(shape, index_shape, axis: int) -> tuple[int, ...]:
    return tuple(shape[:axis]) + tuple(index_shape) + tuple(shape[axis + 1:])


def _check_indices(indices: TensorType) -> None:
    if not dtypes.is_int(indices.dtype):
        raise DTypeError(f"indices must be int32 or int64, got {indices.dtype.name}")


def _check_not_empty(dim: int, indices: TensorType, axis: int) -> None:
    if dim == 0 and indices.size:
        raise ShapeError(f"cannot take {indices.size} indices from axis {axis} of size 0: an "
                         f"empty axis has no element to read")


def _take_infer(types, axis):
    x, indices = types
    _check_indices(indices)
    if x.ndim == 0:
        raise ShapeError("cannot take along an axis of a 0-d tensor")
    axis = normalize_axis(axis, x.ndim)
    _check_not_empty(x.shape[axis], indices, axis)
    return TensorType(_take_shape(x.shape, indices.shape, axis), x.dtype)


def _axis_range(dim: int, axis: int) -> IndexRange:
    return IndexRange(1, -dim, dim, "index", f"axis {axis} of size {dim}")


def _take_range(types, axis):
    return _axis_range(types[0].shape[axis], axis)


def _take_ref(x, indices, axis):
    return np.take(x, indices, axis=axis)


def _take_vjp(g, y, x, indices, axis):
    return [apply("take_grad", [g, indices], axis=axis, shape=x.shape), None]


register(OpDef("take", "movement", 2, ("axis",), _take_infer, _take_ref, _take_vjp,
               {},
               "numpy.take along `axis` (negatives from the end); out of range, the interpreter"
               " and the checking modes raise IndexRangeError, devices clamp.",
               index_range=_take_range))


def _take_grad_infer(types, axis, shape):
    g, indices = types
    _check_indices(indices)
    _check_not_empty(shape[axis], indices, axis)
    expected = _take_shape(shape, indices.shape, axis)
    if g.shape != expected:
        raise ShapeError(f"cotangent of shape {g.shape} does not fit take's output {expected}")
    return TensorType(tuple(shape), g.dtype)


def _take_grad_ref(g, indices, axis, shape):
    out = np.zeros(shape, g.dtype)
    flat = g.reshape(tuple(shape[:axis]) + (indices.size,) + tuple(shape[axis + 1:]))
    np.add.at(out, (slice(None),) * axis + (indices.reshape(-1),), flat)
    return out


def _take_grad_vjp(gg, y, g, indices, axis, shape):
    return [apply("take", [gg, indices], axis=axis), None]


register(OpDef("take_grad", "opaque", 2, ("axis", "shape"), _take_grad_infer, _take_grad_ref,
               _take_grad_vjp, {},
               "Zeros of `shape` plus the input added at `indices` along `axis` (take's"
               " gradient); out-of-range indices are dropped on devices.",
               index_range=lambda types, axis, shape: _axis_range(shape[axis], axis)))


def _check_constant_indices(x: Tensor, indices: Tensor, axis: int) -> None:
    """Constant indices can be range-checked now; fed ones only when the graph runs."""
    if x.ndim == 0:
        return
    dim = x.shape[axis]
    if indices.role != "constant" or indices.size == 0 or not dtypes.is_int(indices.dtype):
        return
    low, high = int(indices.data.min()), int(indices.data.max())
    if low < -dim or high >= dim:
        bad = low if low < -dim else high
        raise argument_error("take", [x, indices], f"index {bad} is out of range for axis"
                                                   f" {axis} of size {dim}", axis=axis)


def take(x, indices, axis: int | None = None) -> Tensor:
    """numpy.take: elements of x at integer `indices` along `axis` (None: of x flattened)."""
    x = as_tensor(x)
    indices = as_tensor(indices)
    if axis is None:
        x = apply("reshape", [x], shape=(x.size,))
        axis = 0
    if not is_int_like(axis):
        raise argument_error("take", [x, indices], f"axis must be an int or None, got {axis!r}",
                             TypeError, axis=axis)
    if x.ndim:
        try:
            axis = normalize_axis(int(axis), x.ndim)
        except ShapeError as exc:
            raise argument_error("take", [x, indices], str(exc), axis=axis) from None
    _check_constant_indices(x, indices, axis)
    return apply("take", [x, indices], axis=axis)
