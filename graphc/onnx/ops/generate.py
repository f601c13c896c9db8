"""ONNX ops that generate or mask values: Range, EyeLike, Trilu, OneHot, CumSum, and
Dropout at inference (the identity, with an all-true mask)."""
from __future__ import annotations

import numpy as np

import graphc as gc
from graphc import dtypes
from graphc.builder import cast, constant
from graphc.ir import Tensor
from graphc.onnx import types
from graphc.onnx.ops.shape import axis_slice, constant_of
from graphc.onnx.registry import NodeView, converter


@converter("Range")
def _range(node: NodeView) -> Tensor:
    start, limit, delta = (np.asarray(node.static(i, "the range bounds")).reshape(-1)[0]
                           for i in range(3))
    return constant_of(np.arange(start, limit, delta, dtype=np.asarray(start).dtype))


@converter("EyeLike", attrs=("dtype", "k"))
def _eye_like(node: NodeView) -> Tensor:
    x = node.input(0)
    dtype = types.numpy_dtype(node.attr("dtype")) if "dtype" in node.attrs else None
    dtype = dtype if dtype is not None else x.dtype
    return constant_of(np.eye(x.shape[0], x.shape[1], node.attr("k", 0), dtype=dtype))


@converter("Trilu", attrs=("upper",))
def _trilu(node: NodeView) -> Tensor:
    x = node.input(0)
    k = node.static_ints(1, "k")
    k = k[0] if k else 0
    rows, cols = x.shape[-2:]
    make = np.triu if node.attr("upper", 1) else np.tril
    mask = make(np.ones((rows, cols), bool), k)
    return gc.where(constant(mask), x, gc.zeros_like(x))


@converter("OneHot", attrs=("axis",))
def _one_hot(node: NodeView) -> Tensor:
    indices, values = node.input(0), node.input(2)
    depth = int(np.asarray(node.static(1, "the depth")).reshape(-1)[0])
    indices = cast(indices, dtypes.int64)             # float indices truncate, as ONNX says
    indices = gc.where(indices < 0, indices + depth, indices)
    axis = node.attr("axis", -1)
    hot = gc.one_hot(indices, depth, dtypes.bool_, axis=axis)
    off = gc.reshape(axis_slice(values, 0, 0, 1), ())
    on = gc.reshape(axis_slice(values, 0, 1, 2), ())
    return gc.where(hot, on, off)


@converter("CumSum", attrs=("exclusive", "reverse"))
def _cumsum(node: NodeView) -> Tensor:
    x = node.input(0)
    axis = node.static_ints(1, "the axis")[0] % x.ndim
    n = x.shape[axis]
    i, j = np.indices((n, n))
    keep = (i < j) if node.attr("exclusive", 0) else (i <= j)   # out[j] sums x[i], i <= j
    if node.attr("reverse", 0):
        keep = keep.T
    wide = x.dtype if dtypes.is_float(x.dtype) else dtypes.float64
    moved = gc.transpose(cast(x, wide), _swap_last(x.ndim, axis))
    summed = gc.matmul(moved, constant(keep.astype(wide)))
    return cast(gc.transpose(summed, _swap_last(x.ndim, axis)), x.dtype)


def _swap_last(ndim: int, axis: int) -> tuple[int, ...]:
    perm = list(range(ndim))
    perm[axis], perm[-1] = perm[-1], perm[axis]
    return tuple(perm)


@converter("Dropout", attrs=("seed", "ratio"), max_outputs=2)
def _dropout(node: NodeView) -> list[Tensor]:
    x = node.input(0)
    training = node.static(2, "training_mode")
    ratio = node.static(1, "the ratio")
    if training is not None and bool(np.asarray(training)) and \
            (ratio is None or float(np.asarray(ratio)) > 0):
        raise node.unsupported("training_mode=True (a random mask) is not imported; graphc's "
                               "gc.random.dropout is the training-time op")
    mask = gc.broadcast_to(gc.constant(True), x.shape)
    return [x, mask]
