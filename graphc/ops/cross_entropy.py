"""Softmax cross-entropy as one op pair: the per-row loss and its gradient by the logits.

`softmax_cross_entropy(logits, targets, axis)` is -sum(t * log_softmax(logits)) along `axis`
(TF's softmax_cross_entropy_with_logits and its sparse form in one op). `targets` are either
integer class labels (the logits' shape without `axis`) or float probabilities (the logits'
shape). Labels are class indices in [0, depth) (no negatives from the end): outside it the
interpreter and GRAPHC_CHECK_NUMERICS / GRAPHC_VALIDATE raise IndexRangeError naming the
label, its position and the user's line; a device run without checking, which has no error
channel, gives such a row loss 0 and gradient 0 (what -sum(one_hot(label) * log_softmax)
gives) and reads nothing outside the logits.

The gradient op `softmax_cross_entropy_grad(logits, targets, g, axis)` is
g * (sum(t) * softmax(logits) - t), with t the one-hot rows of labels. Both lower to row
kernels (codegen/cross_entropy.py), and fusion puts the two of the same logits in ONE kernel.
"""
from __future__ import annotations

import numpy as np

from graphc import dtypes
from graphc.errors import DTypeError, ShapeError
from graphc.ir import TensorType
from graphc.builder import apply
from graphc.ops.movement import expand_dims
from graphc.ops.reduction import sum as reduce_sum
from graphc.ops.registry import IndexRange, OpDef, register


def row_shape(shape: tuple, axis: int) -> tuple:
    """The shape of one loss per row: `shape` without `axis`."""
    return shape[:axis] + shape[axis + 1:]


def is_sparse(targets) -> bool:
    """Are the targets integer labels (rather than probabilities)?"""
    return dtypes.is_int(targets.dtype)


def _check_targets(x: TensorType, targets: TensorType, axis: int) -> None:
    if not dtypes.is_float(x.dtype):
        raise DTypeError(f"expects float logits, got {x.dtype.name}")
    if not 0 <= axis < x.ndim:
        raise ShapeError(f"axis must be in [0, {x.ndim}), got {axis!r}")
    if x.shape[axis] == 0:
        raise ShapeError("the class axis must not be empty")
    if is_sparse(targets):
        if targets.shape != row_shape(x.shape, axis):
            raise ShapeError(f"integer labels must have shape {row_shape(x.shape, axis)}, "
                             f"got {targets.shape}")
    elif targets.dtype != x.dtype or targets.shape != x.shape:
        raise DTypeError(f"float targets must match the logits' type {x}, got {targets}")


def _label_range(types, axis):
    x, targets = types[:2]
    if not is_sparse(targets):
        return None
    depth = x.shape[axis]
    return IndexRange(1, 0, depth, "label", f"{depth} classes (axis {axis} of the logits)")


def _loss_infer(types, axis):
    x, targets = types
    _check_targets(x, targets, axis)
    return TensorType(row_shape(x.shape, axis), x.dtype)


def _grad_infer(types, axis):
    x, targets, g = types
    _check_targets(x, targets, axis)
    if g.shape != row_shape(x.shape, axis) or g.dtype != x.dtype:
        raise ShapeError(f"g must be {x.dtype.name}{list(row_shape(x.shape, axis))}, got {g}")
    return x


def _dense_ref(targets: np.ndarray, x: np.ndarray, axis: int) -> np.ndarray:
    """Targets as probability rows: labels become one-hot rows (zeros when out of range)."""
    if targets.dtype.kind not in "iu":
        return targets
    hot = np.expand_dims(targets, -1) == np.arange(x.shape[axis])
    return np.moveaxis(hot, -1, axis).astype(x.dtype)


def _log_softmax_ref(x: np.ndarray, axis: int) -> np.ndarray:
    s = x - np.max(x, axis=axis, keepdims=True) if x.size else x
    return s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True))


def _loss_ref(x, targets, axis):
    log_p = _log_softmax_ref(x, axis)
    if targets.dtype.kind not in "iu":
        return -np.sum(targets * log_p, axis=axis)
    depth = x.shape[axis]
    valid = (targets >= 0) & (targets < depth)
    picked = np.take_along_axis(log_p, np.expand_dims(np.where(valid, targets, 0), axis), axis)
    return np.where(valid, -np.squeeze(picked, axis), 0).astype(x.dtype)


def _grad_ref(x, targets, g, axis):
    t = _dense_ref(targets, x, axis)
    p = np.exp(_log_softmax_ref(x, axis))
    total = np.sum(t, axis=axis, keepdims=True)
    return (np.expand_dims(g, axis) * (total * p - t)).astype(x.dtype)


def _dense_targets(targets, x, axis):
    if not is_sparse(targets):
        return targets
    return apply("one_hot", [targets], depth=int(x.shape[axis]), dtype=x.dtype, axis=axis)


def _loss_vjp(g, y, x, targets, axis):
    dx = apply("softmax_cross_entropy_grad", [x, targets, g], axis=axis)
    if is_sparse(targets):
        return [dx, None]
    return [dx, -expand_dims(g, axis) * apply("log_softmax", [x], axis=axis)]


def _grad_vjp(h, y, x, targets, g, axis):
    """out = G * (S p - t), G = g along axis, S = sum(t), p = softmax(x)."""
    t = _dense_targets(targets, x, axis)
    p, G = apply("softmax", [x], axis=axis), expand_dims(g, axis)
    S = reduce_sum(t, axis, keepdims=True)
    scaled = h * G * S
    dx = p * (scaled - reduce_sum(scaled * p, axis, keepdims=True))
    dg = reduce_sum(h * (S * p - t), axis)
    dt = None if is_sparse(targets) else G * (reduce_sum(h * p, axis, keepdims=True) - h)
    return [dx, dt, dg]


register(OpDef("softmax_cross_entropy", "opaque", 2, ("axis",), _loss_infer, _loss_ref,
               _loss_vjp, {},
               "-sum(t * log_softmax(logits)) along axis; t: labels (one-hot) or probabilities.",
               index_range=_label_range))
register(OpDef("softmax_cross_entropy_grad", "opaque", 3, ("axis",), _grad_infer, _grad_ref,
               _grad_vjp, {},
               "g * (sum(t) * softmax(logits) - t) along axis: the cross-entropy's gradient.",
               index_range=_label_range))
