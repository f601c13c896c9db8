"""Movement ops: reshape, transpose, broadcast_to, concatenate, pad, and their composites.

Every gradient here is another movement (or a sum for broadcast_to) and has exactly the
input's shape. Indexing (`slice`, `x[...]`, `take`) lives in graphc.ops.indexing and is
re-exported from here.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from graphc import dtypes
from graphc.builder import apply, as_tensor, as_tensors, cast
from graphc.errors import DTypeError, ShapeError
from graphc.ir import Tensor, TensorType
from graphc.ops.registry import OpDef, register
from graphc.ops.indexing import argument_error, getitem, is_int_like, slice_tensor, take
from graphc.shapes import broadcast_axes, normalize_axes, normalize_axis

__all__ = ["reshape", "transpose", "broadcast_to", "expand_dims", "squeeze", "concatenate",
           "stack", "pad", "getitem", "take"]


def _size(shape: Sequence[int]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _axis(op: str, inputs: Sequence[Tensor], axis, ndim: int) -> int:
    """normalize_axis, with the error worded for `op`."""
    if not is_int_like(axis):
        raise argument_error(op, inputs, f"axis must be an int, got {axis!r}", TypeError)
    try:
        return normalize_axis(int(axis), ndim)
    except ShapeError as exc:
        raise argument_error(op, inputs, str(exc), axis=axis) from None


def _axes(op: str, inputs: Sequence[Tensor], axes, ndim: int) -> tuple[int, ...]:
    """normalize_axes for an int or a sequence, with the error worded for `op`."""
    axes = tuple(axes) if isinstance(axes, (tuple, list)) else (axes,)
    if not all(is_int_like(a) for a in axes):
        raise argument_error(op, inputs, f"axes must be ints, got {axes!r}", TypeError)
    try:
        return normalize_axes(tuple(int(a) for a in axes), ndim)
    except ShapeError as exc:
        raise argument_error(op, inputs, str(exc), axis=axes) from None


def _as_shape(op: str, x: Tensor, shape) -> tuple[int, ...]:
    shape = (shape,) if is_int_like(shape) else tuple(shape)
    if not all(is_int_like(d) for d in shape):
        raise argument_error(op, [x], f"shape must be a tuple of ints, got {shape!r}", TypeError)
    return tuple(int(d) for d in shape)


# ---- reshape ----

def _reshape_infer(types, shape):
    (x,) = types
    if any(d < 0 for d in shape):
        raise ShapeError(f"negative dimension in shape {shape}")
    if _size(shape) != x.size:
        raise ShapeError(f"cannot reshape {x.size} elements into shape {shape}")
    return TensorType(tuple(shape), x.dtype)


register(OpDef("reshape", "movement", 1, ("shape",), _reshape_infer,
               lambda x, shape: x.reshape(shape),
               lambda g, y, x, shape: [apply("reshape", [g], shape=x.shape)],
               {}, "Same elements in row-major order, new shape."))


def _resolve_wildcard(x: Tensor, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Replace one -1 by the size that keeps the element count."""
    wild = [i for i, d in enumerate(shape) if d == -1]
    if len(wild) > 1 or any(d < -1 for d in shape):
        raise argument_error("reshape", [x], f"only one dimension can be -1, and no other"
                                             f" negative, in shape {shape}")
    if not wild:
        return shape
    known = _size([d for d in shape if d != -1])
    if known == 0 or x.size % known:
        raise argument_error("reshape", [x], f"cannot reshape {x.size} elements into"
                                             f" shape {shape}")
    return shape[:wild[0]] + (x.size // known,) + shape[wild[0] + 1:]


def reshape(x, shape) -> Tensor:
    """numpy.reshape (row-major); one dimension may be -1."""
    x = as_tensor(x)
    shape = _resolve_wildcard(x, _as_shape("reshape", x, shape))
    return apply("reshape", [x], shape=shape)


# ---- transpose ----

def _transpose_infer(types, perm):
    (x,) = types
    if sorted(perm) != list(range(x.ndim)):
        raise ShapeError(f"axes {perm} are not a permutation of the {x.ndim} axes")
    return TensorType(tuple(x.shape[a] for a in perm), x.dtype)


def _transpose_vjp(g, y, x, perm):
    inverse = tuple(int(a) for a in np.argsort(perm))
    return [apply("transpose", [g], perm=inverse)]


register(OpDef("transpose", "movement", 1, ("perm",), _transpose_infer,
               lambda x, perm: np.transpose(x, perm), _transpose_vjp,
               {}, "Permute axes: out axis i is perm[i]."))


def transpose(x, axes=None) -> Tensor:
    """numpy.transpose: permute axes (reverse them when `axes` is None)."""
    x = as_tensor(x)
    if axes is None:
        return apply("transpose", [x], perm=tuple(reversed(range(x.ndim))))
    axes = _as_shape("transpose", x, axes)
    perm = tuple(a + x.ndim if -x.ndim <= a < 0 else a for a in axes)
    return apply("transpose", [x], perm=perm)


# ---- broadcast_to ----

def _broadcast_infer(types, shape):
    (x,) = types
    lead = len(shape) - x.ndim
    fits = lead >= 0 and all(d in (1, t) for d, t in zip(x.shape, shape[lead:]))
    if not fits or any(d < 0 for d in shape):
        raise ShapeError(f"cannot broadcast shape {x.shape} to {tuple(shape)}")
    return TensorType(tuple(shape), x.dtype)


def _broadcast_vjp(g, y, x, shape):
    axes = broadcast_axes(x.shape, shape)
    if not axes:
        return [g]
    from graphc.ops.reduction import sum as reduce_sum
    total = reduce_sum(g, axis=axes)
    return [total if total.shape == x.shape else apply("reshape", [total], shape=x.shape)]


register(OpDef("broadcast_to", "movement", 1, ("shape",), _broadcast_infer,
               lambda x, shape: np.broadcast_to(x, shape).copy(), _broadcast_vjp,
               {},
               "numpy.broadcast_to; the gradient sums over the broadcast axes."))


def broadcast_to(x, shape) -> Tensor:
    """numpy.broadcast_to: repeat size-1 and missing leading axes up to `shape`."""
    x = as_tensor(x)
    return apply("broadcast_to", [x], shape=_as_shape("broadcast_to", x, shape))


# ---- expand_dims / squeeze: reshapes ----

def expand_dims(x, axis) -> Tensor:
    """numpy.expand_dims: insert size-1 axes at `axis` (an int or a tuple) of the result."""
    x = as_tensor(x)
    count = len(axis) if isinstance(axis, (tuple, list)) else 1
    axes = _axes("expand_dims", [x], axis, x.ndim + count)
    dims = iter(x.shape)
    shape = tuple(1 if i in axes else next(dims) for i in range(x.ndim + count))
    return apply("reshape", [x], shape=shape)


def squeeze(x, axis=None) -> Tensor:
    """numpy.squeeze: drop size-1 axes (all of them, or those in `axis`)."""
    x = as_tensor(x)
    if axis is None:
        axes = tuple(i for i, d in enumerate(x.shape) if d == 1)
    else:
        axes = _axes("squeeze", [x], axis, x.ndim)
    for a in axes:
        if x.shape[a] != 1:
            raise argument_error("squeeze", [x], f"cannot squeeze axis {a} of size"
                                                 f" {x.shape[a]}", axis=axis)
    shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    return apply("reshape", [x], shape=shape)


# ---- concatenate / stack ----

def _concat_infer(types, axis):
    if not types:
        raise ShapeError("needs at least one input")
    first = types[0]
    if len({t.dtype for t in types}) > 1:
        raise DTypeError("inputs must share one dtype (the public function promotes them)")
    if any(t.ndim == 0 for t in types):
        raise ShapeError("cannot concatenate 0-d tensors")
    if any(t.ndim != first.ndim for t in types):
        raise ShapeError("inputs must have the same number of dimensions")
    axis = normalize_axis(axis, first.ndim)
    rest = {t.shape[:axis] + t.shape[axis + 1:] for t in types}
    if len(rest) > 1:
        raise ShapeError(f"input shapes must match except along axis {axis}")
    shape = first.shape[:axis] + (sum(t.shape[axis] for t in types),) + first.shape[axis + 1:]
    return TensorType(shape, first.dtype)


def _concat_vjp(g, y, *inputs, axis):
    grads, offset = [], 0
    for x in inputs:
        starts = tuple(offset if i == axis else 0 for i in range(x.ndim))
        stops = tuple(offset + d if i == axis else d for i, d in enumerate(x.shape))
        grads.append(slice_tensor(g, starts, stops, (1,) * x.ndim))
        offset += x.shape[axis]
    return grads


register(OpDef("concatenate", "movement", None, ("axis",), _concat_infer,
               lambda *xs, axis: np.concatenate(xs, axis=axis), _concat_vjp,
               {}, "Join tensors along an existing axis."))


def _tensor_list(op: str, tensors) -> list[Tensor]:
    """The operands of a variadic op, promoted to one dtype."""
    if isinstance(tensors, (Tensor, np.ndarray)) or not isinstance(tensors, Sequence):
        raise argument_error(op, [], f"takes a list of tensors, got {type(tensors).__name__}",
                             TypeError)
    if not tensors:
        raise argument_error(op, [], "needs at least one tensor")
    tensors = as_tensors(*tensors)
    common = dtypes.promote(*[t.dtype for t in tensors])
    return [cast(t, common) for t in tensors]


def concatenate(tensors, axis: int | None = 0) -> Tensor:
    """numpy.concatenate: join along `axis` (None: flatten first); dtypes are promoted."""
    tensors = _tensor_list("concatenate", tensors)
    if axis is None:
        tensors, axis = [apply("reshape", [t], shape=(t.size,)) for t in tensors], 0
    if tensors[0].ndim:
        axis = _axis("concatenate", tensors, axis, tensors[0].ndim)
    return apply("concatenate", tensors, axis=axis)


def stack(tensors, axis: int = 0) -> Tensor:
    """numpy.stack: join same-shaped tensors along a new axis; dtypes are promoted."""
    tensors = _tensor_list("stack", tensors)
    shapes = {t.shape for t in tensors}
    if len(shapes) > 1:
        listed = ", ".join(str(s) for s in sorted(shapes))
        raise argument_error("stack", tensors, f"all inputs must have one shape, got {listed}")
    axis = _axis("stack", tensors, axis, tensors[0].ndim + 1)
    return apply("concatenate", [expand_dims(t, axis) for t in tensors], axis=axis)


# ---- pad ----

def _pad_infer(types, pad_width, value):
    (x,) = types
    if x.ndim == 0:
        raise ShapeError("cannot pad a 0-d tensor")
    if len(pad_width) != x.ndim or any(len(pair) != 2 for pair in pad_width):
        raise ShapeError(f"pad_width needs one (before, after) pair per axis, got {pad_width}")
    if any(w < 0 for pair in pad_width for w in pair):
        raise ShapeError(f"negative pad widths are not allowed, got {pad_width}")
    return TensorType(tuple(d + b + a for d, (b, a) in zip(x.shape, pad_width)), x.dtype)


def _pad_ref(x, pad_width, value):
    return np.pad(x, pad_width, mode="constant", constant_values=value)


def _pad_vjp(g, y, x, pad_width, value):
    starts = tuple(before for before, _ in pad_width)
    stops = tuple(before + d for (before, _), d in zip(pad_width, x.shape))
    return [slice_tensor(g, starts, stops, (1,) * x.ndim)]


register(OpDef("pad", "movement", 1, ("pad_width", "value"), _pad_infer, _pad_ref, _pad_vjp,
               {},
               "Constant padding: pad_width holds a (before, after) pair per axis."))


def _pad_pairs(x: Tensor, pad_width) -> tuple[tuple[int, int], ...]:
    """numpy's pad_width forms (int, (before, after), per-axis pairs) as per-axis pairs."""
    widths = np.asarray(pad_width)
    if widths.size and widths.dtype.kind not in "iu":
        raise argument_error("pad", [x], f"pad_width must hold ints, got {pad_width!r}",
                             TypeError)
    try:
        pairs = np.broadcast_to(widths, (x.ndim, 2))
    except ValueError:
        raise argument_error("pad", [x], f"pad_width {pad_width!r} does not fit a {x.ndim}-d"
                                         f" tensor") from None
    return tuple((int(b), int(a)) for b, a in pairs)


def pad(x, pad_width, mode: str = "constant", constant_values=0) -> Tensor:
    """numpy.pad in constant mode: widen each axis by (before, after) copies of a value."""
    x = as_tensor(x)
    if mode != "constant":
        raise argument_error("pad", [x], f"mode {mode!r} is not supported, only 'constant'",
                             ValueError)
    if isinstance(constant_values, Tensor) or np.ndim(constant_values) != 0:
        raise argument_error("pad", [x], "constant_values must be one Python or numpy scalar",
                             ValueError)
    value = x.dtype.type(constant_values).item()
    return apply("pad", [x], pad_width=_pad_pairs(x, pad_width), value=value)
