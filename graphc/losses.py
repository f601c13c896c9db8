"""gc.losses: Keras's losses, `fn(y_true, y_pred, from_logits=False)` -> per-example values.

Each is written to be numerically stable: from logits, the categorical cross-entropies
are one softmax_cross_entropy op (a max-subtracted log-sum-exp row kernel fused with its
gradient) and the binary one the softplus form of the sigmoid; from probabilities,
predictions are clipped to [eps, 1 - eps] as Keras does.
"""
from __future__ import annotations

import graphc as gc
from graphc.builder import as_tensor

EPSILON = 1e-7


def _last_axis_mean(values):
    return gc.mean(values, axis=-1) if values.ndim else values


def mse(y_true, y_pred):
    """Mean squared error over the last axis."""
    y_pred = as_tensor(y_pred)
    return _last_axis_mean(gc.square(y_pred - as_tensor(y_true, y_pred.dtype)))


def mae(y_true, y_pred):
    """Mean absolute error over the last axis."""
    y_pred = as_tensor(y_pred)
    return _last_axis_mean(gc.abs(y_pred - as_tensor(y_true, y_pred.dtype)))


def binary_crossentropy(y_true, y_pred, from_logits: bool = False):
    """Mean over the last axis of -(y log p + (1-y) log(1-p)).

    From logits z it is max(z, 0) - z*y + log(1 + exp(-|z|)), which never overflows.
    """
    y_pred = as_tensor(y_pred)
    y = gc.cast(as_tensor(y_true), y_pred.dtype)
    if from_logits:
        z = y_pred
        values = gc.relu(z) - z * y + gc.log(1 + gc.exp(-gc.abs(z)))
    else:
        p = gc.clip(y_pred, EPSILON, 1 - EPSILON)
        values = -(y * gc.log(p) + (1 - y) * gc.log(1 - p))
    return _last_axis_mean(values)


def categorical_crossentropy(y_true, y_pred, from_logits: bool = False, axis: int = -1):
    """-sum(y_true * log p) over `axis`, with y_true one-hot (or soft) targets."""
    y_pred = as_tensor(y_pred)
    y = gc.cast(as_tensor(y_true), y_pred.dtype)
    if from_logits:
        return gc.softmax_cross_entropy(y_pred, y, axis=axis)
    p = y_pred / gc.sum(y_pred, axis=axis, keepdims=True)
    return -gc.sum(y * gc.log(gc.clip(p, EPSILON, 1 - EPSILON)), axis=axis)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits: bool = False, axis: int = -1):
    """Cross-entropy with integer class labels y_true (one label per example); a label
    outside [0, classes) selects no class (its loss and gradient are 0 from logits)."""
    y_pred = as_tensor(y_pred)
    labels = as_tensor(y_true)
    if labels.ndim == y_pred.ndim and labels.shape[-1] == 1:
        labels = gc.squeeze(labels, axis=-1)
    labels = gc.cast(labels, gc.int32)
    if from_logits:
        return gc.softmax_cross_entropy(y_pred, labels, axis=axis)
    onehot = gc.one_hot(labels, y_pred.shape[axis], dtype=y_pred.dtype, axis=axis)
    return categorical_crossentropy(onehot, y_pred, axis=axis)


def huber(y_true, y_pred, delta: float = 1.0):
    """Mean over the last axis of 0.5 e**2 where |e| <= delta, else delta |e| - 0.5 delta**2
    (e = y_pred - y_true)."""
    y_pred = as_tensor(y_pred)
    error = y_pred - as_tensor(y_true, y_pred.dtype)
    size = gc.abs(error)
    values = gc.where(gc.less_equal(size, delta), 0.5 * gc.square(error),
                      delta * size - 0.5 * delta * delta)
    return _last_axis_mean(values)


def kl_divergence(y_true, y_pred):
    """sum(y_true * log(y_true / y_pred)) over the last axis, both clipped to [eps, 1]."""
    y_pred = as_tensor(y_pred)
    y = gc.clip(gc.cast(as_tensor(y_true), y_pred.dtype), EPSILON, 1.0)
    p = gc.clip(y_pred, EPSILON, 1.0)
    values = y * gc.log(y / p)
    return gc.sum(values, axis=-1) if values.ndim else values


def poisson(y_true, y_pred):
    """Mean over the last axis of y_pred - y_true * log(y_pred + eps)."""
    y_pred = as_tensor(y_pred)
    y = gc.cast(as_tensor(y_true), y_pred.dtype)
    return _last_axis_mean(y_pred - y * gc.log(y_pred + EPSILON))


def _hinge_labels(y):
    """Keras's rule: labels that are all 0 or 1 (in this batch) become -1 / 1."""
    binary = gc.logical_or(gc.equal(y, 0.0), gc.equal(y, 1.0))
    all_binary = gc.greater(gc.min(gc.cast(binary, y.dtype)), 0.5)
    return gc.where(all_binary, 2.0 * y - 1.0, y)


def hinge(y_true, y_pred):
    """Mean over the last axis of max(1 - y_true * y_pred, 0); 0/1 labels count as -1/1."""
    y_pred = as_tensor(y_pred)
    y = _hinge_labels(gc.cast(as_tensor(y_true), y_pred.dtype))
    return _last_axis_mean(gc.maximum(1.0 - y * y_pred, 0.0))


def l2_normalize(x, axis: int = -1):
    """x / ||x|| along `axis`; the squared norm is held above eps**2 (zero stays zero)."""
    x = as_tensor(x)
    squares = gc.sum(gc.square(x), axis=axis, keepdims=True)
    return x / gc.sqrt(gc.maximum(squares, EPSILON * EPSILON))


def cosine_similarity(y_true, y_pred, axis: int = -1):
    """-sum(l2_normalize(y_true) * l2_normalize(y_pred)) over `axis` (-1 for the same
    direction, 0 orthogonal or a zero vector)."""
    y_pred = as_tensor(y_pred)
    y = gc.cast(as_tensor(y_true), y_pred.dtype)
    return -gc.sum(l2_normalize(y, axis) * l2_normalize(y_pred, axis), axis=axis)
