"""ONNX normalizations and softmaxes.

Statistics are computed in float32 at least (float16 inputs are widened, as ONNX's
stash_type=1 asks), with the variance as the mean of squared deviations.
"""
from __future__ import annotations

import numpy as np

import graphc as gc
from graphc import dtypes
from graphc.builder import cast
from graphc.ir import Tensor
from graphc.onnx.registry import NodeView, converter


def _channel_view(p: Tensor, ndim: int) -> Tensor:
    """A per-channel (C,) parameter shaped to broadcast against an N, C, ... input."""
    return gc.reshape(p, (1, -1) + (1,) * (ndim - 2))


def _wide(x: Tensor) -> Tensor:
    return cast(x, dtypes.float32) if x.dtype == dtypes.float16 else x


def _moments(x: Tensor, axes) -> tuple[Tensor, Tensor]:
    mean = gc.mean(x, axes, keepdims=True)
    centered = x - mean
    return mean, gc.mean(centered * centered, axes, keepdims=True)


@converter("BatchNormalization", attrs=("epsilon", "momentum", "training_mode", "spatial",
                                        "is_test"), max_outputs=3)
def _batch_norm(node: NodeView) -> Tensor | list[Tensor]:
    if not node.attr("spatial", 1):
        raise node.unsupported("spatial=0")
    if node.n_outputs > 1 and node.opset < 14:
        raise node.unsupported(f"the statistics outputs of opset {node.opset}'s form")
    x, scale, bias, mean, var = (node.input(i) for i in range(5))
    eps = node.attr("epsilon", 1e-5)
    if node.attr("training_mode", 0):
        return _batch_norm_training(node, x, scale, bias, mean, var, eps)
    inv = scale / gc.sqrt(var + eps)
    shift = bias - mean * inv
    return x * _channel_view(cast(inv, x.dtype), x.ndim) + \
        _channel_view(cast(shift, x.dtype), x.ndim)


def _batch_norm_training(node: NodeView, x, scale, bias, mean, var, eps) -> list[Tensor]:
    """Normalized by the batch's statistics; the running ones move toward them by
    (1 - momentum)."""
    axes = (0,) + tuple(range(2, x.ndim))
    batch_mean, batch_var = _moments(x, axes)
    y = (x - batch_mean) / gc.sqrt(batch_var + eps)
    y = y * _channel_view(scale, x.ndim) + _channel_view(bias, x.ndim)
    momentum = node.attr("momentum", 0.9)
    flat_mean, flat_var = gc.reshape(batch_mean, mean.shape), gc.reshape(batch_var, var.shape)
    return [y, mean * momentum + flat_mean * (1 - momentum),
            var * momentum + flat_var * (1 - momentum)]


@converter("InstanceNormalization", attrs=("epsilon",))
def _instance_norm(node: NodeView) -> Tensor:
    x, scale, bias = node.input(0), node.input(1), node.input(2)
    v = _wide(x)
    mean, var = _moments(v, tuple(range(2, x.ndim)))
    y = (v - mean) / gc.sqrt(var + node.attr("epsilon", 1e-5))
    y = cast(y, x.dtype)
    return y * _channel_view(scale, x.ndim) + _channel_view(bias, x.ndim)


@converter("LayerNormalization", attrs=("axis", "epsilon", "stash_type"), max_outputs=3)
def _layer_norm(node: NodeView) -> list[Tensor]:
    x, scale, bias = node.input(0), node.input(1), node.input(2)
    axis = node.attr("axis", -1) % x.ndim
    v = _wide(x) if node.attr("stash_type", 1) == 1 else x
    mean, var = _moments(v, tuple(range(axis, x.ndim)))
    inv_std = 1.0 / gc.sqrt(var + node.attr("epsilon", 1e-5))
    y = cast((v - mean) * inv_std, x.dtype) * scale
    if bias is not None:
        y = y + bias
    return [y, mean, inv_std]


@converter("RMSNormalization", attrs=("axis", "epsilon", "stash_type"))
def _rms_norm(node: NodeView) -> Tensor:
    x, scale = node.input(0), node.input(1)
    axis = node.attr("axis", -1) % x.ndim
    v = _wide(x) if node.attr("stash_type", 1) == 1 else x
    ms = gc.mean(v * v, tuple(range(axis, x.ndim)), keepdims=True)
    y = v / gc.sqrt(ms + node.attr("epsilon", 1e-5))
    return cast(y, x.dtype) * scale


@converter("GroupNormalization", attrs=("epsilon", "num_groups", "stash_type"))
def _group_norm(node: NodeView) -> Tensor:
    x, scale, bias = node.input(0), node.input(1), node.input(2)
    groups = node.attr("num_groups")
    n, c = x.shape[:2]
    v = gc.reshape(_wide(x), (n, groups, -1))
    mean, var = _moments(v, (2,))
    y = gc.reshape((v - mean) / gc.sqrt(var + node.attr("epsilon", 1e-5)), x.shape)
    y = cast(y, x.dtype)
    if scale.shape[0] != c:                 # opset 18: one scale and bias per group
        scale = gc.reshape(gc.broadcast_to(gc.reshape(scale, (groups, 1)),
                                           (groups, c // groups)), (c,))
        bias = gc.reshape(gc.broadcast_to(gc.reshape(bias, (groups, 1)),
                                          (groups, c // groups)), (c,))
    return y * _channel_view(scale, x.ndim) + _channel_view(bias, x.ndim)


@converter("MeanVarianceNormalization", attrs=("axes",))
def _mvn(node: NodeView) -> Tensor:
    x = node.input(0)
    axes = tuple(sorted(a % x.ndim for a in (node.attr("axes") or [0, 2, 3])))
    mean, var = _moments(x, axes)
    return (x - mean) / (gc.sqrt(var) + 1e-9)


@converter("LpNormalization", attrs=("axis", "p"))
def _lp_norm(node: NodeView) -> Tensor:
    x = node.input(0)
    axis = node.attr("axis", -1) % x.ndim
    if node.attr("p", 2) == 1:
        norm = gc.sum(gc.abs(x), axis, keepdims=True)
    else:
        norm = gc.sqrt(gc.sum(x * x, axis, keepdims=True))
    return x / gc.where(gc.equal(norm, 0), gc.ones_like(norm), norm)   # 0 / 0 is 0


@converter("LRN", attrs=("alpha", "beta", "bias", "size"))
def _lrn(node: NodeView) -> Tensor:
    x = node.input(0)
    size = node.attr("size")
    before, after = (size - 1) // 2, size // 2
    square = gc.pad(x * x, [(0, 0), (before, after)] + [(0, 0)] * (x.ndim - 2))
    c = x.shape[1]
    total = None
    for offset in range(size):
        part = square[:, offset:offset + c]
        total = part if total is None else total + part
    scale = node.attr("bias", 1.0) + (node.attr("alpha", 1e-4) / size) * total
    return x / gc.power(scale, node.attr("beta", 0.75))


# ---- softmaxes ----

def _row_wise(node: NodeView, fn) -> Tensor:
    """Softmax-like ops: along `axis` (opset >= 13), or over the axes from `axis` on, the
    input flattened to 2-D (older opsets)."""
    x = node.input(0)
    if node.opset >= 13:
        return fn(x, node.attr("axis", -1) % max(x.ndim, 1))
    axis = node.attr("axis", 1) % max(x.ndim, 1)
    rows = int(np.prod(x.shape[:axis], dtype=np.int64))
    flat = gc.reshape(x, (rows, -1))
    return gc.reshape(fn(flat, 1), x.shape)


def _hardmax(x: Tensor, axis: int) -> Tensor:
    hot = gc.one_hot(gc.argmax(x, axis), x.shape[axis], x.dtype, axis=axis)
    return hot


converter("Softmax", attrs=("axis",))(lambda node: _row_wise(node, gc.softmax))
converter("LogSoftmax", attrs=("axis",))(lambda node: _row_wise(node, gc.log_softmax))
converter("Hardmax", attrs=("axis",))(lambda node: _row_wise(node, _hardmax))
