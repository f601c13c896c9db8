"""Neural-network ops: softmax, log_softmax and one_hot here; the 2-D pools in ops/pool.py,
the softmax cross-entropy pair in ops/cross_entropy.py.

softmax and log_softmax are single ops (a fused row-wise kernel), computed max-subtracted so
that inputs of any magnitude give finite results; their vjps are written in terms of the
output, which the forward pass has already computed.
"""
from __future__ import annotations

import numpy as np

from graphc import dtypes
from graphc.builder import apply, as_tensor, cast, op_error_text
from graphc.errors import DTypeError, ShapeError
from graphc.ir import Tensor, TensorType
from graphc.ops.registry import NonDifferentiable, OpDef, register
from graphc.math import exp
from graphc.ops.cross_entropy import is_sparse
from graphc.ops.pool import avg_pool2d, max_pool2d
from graphc.ops.reduction import sum as reduce_sum
from graphc.shapes import normalize_axis
from graphc.sites import user_site

__all__ = ["softmax", "log_softmax", "softmax_cross_entropy", "one_hot", "max_pool2d",
           "avg_pool2d"]


# ---- softmax and log_softmax ----

def _softmax_infer(types, axis):
    (x,) = types
    if not dtypes.is_float(x.dtype):
        raise DTypeError(f"expects a float input, got {x.dtype.name}")
    if not (0 <= axis < x.ndim or axis == 0 == x.ndim):
        raise ShapeError(f"axis must be in [0, {x.ndim}), got {axis!r}")
    return x


def _shifted(x: np.ndarray, axis: int) -> np.ndarray:
    """x minus its maximum along axis (an empty input stays as it is)."""
    if x.size == 0:
        return x
    return x - np.max(x, axis=axis if x.ndim else None, keepdims=True)


def _softmax_ref(x, axis):
    e = np.exp(_shifted(x, axis))
    return e / np.sum(e, axis=axis if x.ndim else None, keepdims=True)


def _log_softmax_ref(x, axis):
    s = _shifted(x, axis)
    return s - np.log(np.sum(np.exp(s), axis=axis if x.ndim else None, keepdims=True))


def _softmax_vjp(g, y, x, axis):
    return [y * (g - reduce_sum(g * y, axis, keepdims=True))]


def _log_softmax_vjp(g, y, x, axis):
    return [g - exp(y) * reduce_sum(g, axis, keepdims=True)]


register(OpDef("softmax", "opaque", 1, ("axis",), _softmax_infer, _softmax_ref, _softmax_vjp,
               {}, "exp(x - max) / sum(exp(x - max)) along axis."))
register(OpDef("log_softmax", "opaque", 1, ("axis",), _softmax_infer, _log_softmax_ref,
               _log_softmax_vjp, {},
               "(x - max) - log(sum(exp(x - max))) along axis."))


def _axis_for(op: str, x: Tensor, axis, ndim: int) -> int:
    """A non-negative axis of an ndim-d result, or a ShapeError naming the op and the line."""
    try:
        if not isinstance(axis, (int, np.integer)):
            raise ShapeError(f"axis must be an int, got {axis!r}")
        return normalize_axis(int(axis), max(ndim, 1))     # a 0-d input takes 0 and -1
    except ShapeError as exc:
        raise ShapeError(op_error_text(op, [x], {"axis": axis}, user_site(), str(exc))) from None


def _row_op(op: str, x, axis) -> Tensor:
    x = as_tensor(x)
    x = x if dtypes.is_float(x.dtype) else cast(x, dtypes.DEFAULT_FLOAT)
    return apply(op, [x], axis=_axis_for(op, x, axis, x.ndim))


def softmax(x, axis: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along `axis`, stable for large |x| (integers become float32)."""
    return _row_op("softmax", x, axis)


def log_softmax(x, axis: int = -1) -> Tensor:
    """log(softmax(x)) along `axis`, computed without forming softmax (stable)."""
    return _row_op("log_softmax", x, axis)


def softmax_cross_entropy(logits, targets, axis: int = -1) -> Tensor:
    """-sum(t * log_softmax(logits)) along `axis`, one value per row: `targets` are integer
    class labels (the logits' shape without `axis`; out-of-range ones give 0) or
    probabilities (the logits' shape). One row kernel computes it with its gradient."""
    logits = as_tensor(logits)
    logits = logits if dtypes.is_float(logits.dtype) else cast(logits, dtypes.DEFAULT_FLOAT)
    targets = as_tensor(targets)
    if not is_sparse(targets):
        targets = cast(targets, logits.dtype)
    axis = _axis_for("softmax_cross_entropy", logits, axis, logits.ndim)
    return apply("softmax_cross_entropy", [logits, targets], axis=axis)


# ---- one_hot ----

def _one_hot_infer(types, depth, dtype, axis):
    (indices,) = types
    if not dtypes.is_int(indices.dtype):
        raise DTypeError(f"expects integer indices, got {indices.dtype.name}")
    if depth < 0:
        raise ShapeError(f"depth must be non-negative, got {depth}")
    if not 0 <= axis <= indices.ndim:
        raise ShapeError(f"axis must be in [0, {indices.ndim}], got {axis}")
    shape = indices.shape[:axis] + (depth,) + indices.shape[axis:]
    return TensorType(shape, dtypes.as_dtype(dtype))


def _one_hot_ref(indices, depth, dtype, axis):
    hot = np.expand_dims(indices, -1) == np.arange(depth)
    return np.moveaxis(hot, -1, axis).astype(dtype)


register(OpDef("one_hot", "opaque", 1, ("depth", "dtype", "axis"), _one_hot_infer,
               _one_hot_ref, NonDifferentiable("integer indices"),
               {},
               "1 where the index equals the position along axis, else 0 (TF's one_hot)."))


def one_hot(indices, depth: int, dtype=dtypes.float32, axis: int = -1) -> Tensor:
    """One-hot vectors of length `depth` along `axis`; out-of-range indices give all zeros
    (TF's and JAX's definition: one_hot compares, it reads nothing at the index, so it has no
    index_range and the checking modes accept any index)."""
    indices = as_tensor(indices)
    if not isinstance(depth, (int, np.integer)):
        raise ShapeError(op_error_text("one_hot", [indices], {"depth": depth}, user_site(),
                                       f"depth must be an int, got {depth!r}"))
    return apply("one_hot", [indices], depth=int(depth), dtype=dtypes.as_dtype(dtype),
                 axis=_axis_for("one_hot", indices, axis, indices.ndim + 1))
