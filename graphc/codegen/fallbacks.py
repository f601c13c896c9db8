"""Generic fallbacks for ops whose kernel is a hand-written template: the same values from
primitive ops (reductions, elementwise and movement ops), for a backend whose renderer has
no templates (Capabilities.templates is False: the Vulkan backend).

The lowering registry (codegen/lowerings.py) lists each "raw" op's fallback here
(FALLBACKS, keyed by op); `decompose` rewrites a graph's nodes of those ops before fusion,
so they lower to the kernel IR's loop and elementwise kernels every renderer has. Each
decomposition is the op's definition in ops/ (the interpreter's reference), built at the
node's site so errors still name the user's line.

- softmax, log_softmax: the row max, exp, the row sum.
- layer_norm: mean and biased variance over the last axis; layer_norm_grad: its composite
  form (ops/layer_norm.composite_grad).
- softmax_cross_entropy (+ _grad): log_softmax rows against dense targets (labels one-hot:
  an out-of-range label's row is zeros, so its loss and gradient are 0, as on OpenCL).
- max_pool2d_grad, max_pool2d_select: the windows of the -inf padded input side by side
  (K strided slices), their first maximum (argmax) one-hot, then the cotangent scattered
  back (K strided slice_grads added) or the other input gathered (a sum over the window).
  A window holding NaN: the template keeps the first maximum it compares (a NaN never
  wins), argmax picks the first NaN.
- concatenate of more operands than a kernel may bind (a Vulkan device's storage buffers
  per shader): a tree of smaller concatenations.
"""
from __future__ import annotations

import numpy as np

import graphc.builder as B
from graphc.ir import Graph, Node
from graphc.rewrite import rebuild
from graphc.sites import site_of


def _max(x, axis):
    return B.apply("reduce_max", [x], axes=(axis,), keepdims=True)


def _sum(x, axis, keepdims=True):
    return B.apply("reduce_sum", [x], axes=(axis,), keepdims=keepdims)


def _softmax(node: Node, inputs):
    (x,), axis = inputs, node.attrs["axis"]
    e = B.apply("exp", [x - _max(x, axis)])
    return e / _sum(e, axis)


def _log_softmax(node: Node, inputs):
    (x,), axis = inputs, node.attrs["axis"]
    s = x - _max(x, axis)
    return s - B.apply("log", [_sum(B.apply("exp", [s]), axis)])


def _layer_norm(node: Node, inputs):
    x, gamma, beta = inputs
    n = x.shape[-1]
    centered = x - _sum(x, x.ndim - 1) * (1.0 / n)
    variance = _sum(centered * centered, x.ndim - 1) * (1.0 / n)
    r = 1.0 / B.apply("sqrt", [variance + node.attrs["epsilon"]])
    return centered * r * gamma + beta


def _layer_norm_grad(node: Node, inputs):
    from graphc.ops.layer_norm import composite_grad
    x, gamma, g = inputs
    return composite_grad(x, gamma, g, node.attrs["epsilon"])


def _dense(targets, x, axis):
    if targets.dtype.kind not in "iu":
        return targets
    return B.apply("one_hot", [targets], depth=int(x.shape[axis]), dtype=x.dtype, axis=axis)


def _cross_entropy(node: Node, inputs):
    x, targets = inputs
    axis = node.attrs["axis"]
    log_p = _log_softmax(node, (x,))
    return -_sum(_dense(targets, x, axis) * log_p, axis, keepdims=False)


def _cross_entropy_grad(node: Node, inputs):
    x, targets, g = inputs
    axis = node.attrs["axis"]
    t = _dense(targets, x, axis)
    p = _softmax(node, (x,))
    total = _sum(t, axis)
    return B.apply("reshape", [g], shape=_expanded(g.shape, axis)) * (total * p - t)


def _expanded(shape, axis):
    return tuple(shape[:axis]) + (1,) + tuple(shape[axis:])


def _windows(x, node, fill):
    """(N, C, OH, OW, K): the K values of each pooling window of `x` padded with `fill`."""
    (kh, kw), (sh, sw), (ph, pw) = (node.attrs[a] for a in ("kernel", "stride", "padding"))
    n, c, h, w = x.shape
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    padded = B.apply("pad", [x], pad_width=((0, 0), (0, 0), (ph, ph), (pw, pw)),
                     value=float(fill)) if ph or pw else x
    pieces = []
    for i in range(kh):
        for j in range(kw):
            piece = B.apply("slice", [padded], starts=(0, 0, i, j),
                            stops=(n, c, i + sh * (oh - 1) + 1, j + sw * (ow - 1) + 1),
                            steps=(1, 1, sh, sw))
            pieces.append(B.apply("reshape", [piece], shape=(n, c, oh, ow, 1)))
    stacked = pieces[0] if len(pieces) == 1 else B.apply("concatenate", pieces, axis=4)
    return stacked, padded.shape, (oh, ow)


def _window_choice(x, node):
    """One-hot (N, C, OH, OW, K) of each window's first maximum."""
    windows, _, _ = _windows(x, node, -np.inf)
    first = B.apply("argmax", [windows], axis=4, keepdims=False)
    k = windows.shape[4]
    return B.apply("one_hot", [first], depth=k, dtype=x.dtype, axis=4)


def _max_pool2d_grad(node: Node, inputs):
    x, g = inputs
    (kh, kw), (sh, sw), (ph, pw) = (node.attrs[a] for a in ("kernel", "stride", "padding"))
    n, c, h, w = x.shape
    routed = _window_choice(x, node) * B.apply("reshape", [g], shape=g.shape + (1,))
    oh, ow = g.shape[2:]
    shape = (n, c, h + 2 * ph, w + 2 * pw)
    total = None
    for i in range(kh):
        for j in range(kw):
            k = i * kw + j
            part = B.apply("slice", [routed], starts=(0, 0, 0, 0, k),
                           stops=(n, c, oh, ow, k + 1), steps=(1, 1, 1, 1, 1))
            part = B.apply("reshape", [part], shape=(n, c, oh, ow))
            placed = B.apply("slice_grad", [part], starts=(0, 0, i, j),
                             stops=(n, c, i + sh * (oh - 1) + 1, j + sw * (ow - 1) + 1),
                             steps=(1, 1, sh, sw), shape=shape)
            total = placed if total is None else total + placed
    if ph or pw:
        total = B.apply("slice", [total], starts=(0, 0, ph, pw), stops=(n, c, ph + h, pw + w),
                        steps=(1, 1, 1, 1))
    return total


def _max_pool2d_select(node: Node, inputs):
    x, hidden = inputs
    values, _, _ = _windows(hidden, node, 0.0)
    return _sum(_window_choice(x, node) * values, 4, keepdims=False)


FALLBACKS = {
    "softmax": _softmax,
    "log_softmax": _log_softmax,
    "layer_norm": _layer_norm,
    "layer_norm_grad": _layer_norm_grad,
    "softmax_cross_entropy": _cross_entropy,
    "softmax_cross_entropy_grad": _cross_entropy_grad,
    "max_pool2d_grad": _max_pool2d_grad,
    "max_pool2d_select": _max_pool2d_select,
}


def _concatenate_tree(inputs, axis: int, most: int):
    """A concatenation of many operands as concatenations of at most `most` at a time (each
    reads at most that many buffers; fusion stores the partial results as it must)."""
    while len(inputs) > most:
        inputs = [B.apply("concatenate", inputs[i:i + most], axis=axis) if len(
            inputs[i:i + most]) > 1 else inputs[i] for i in range(0, len(inputs), most)]
    return B.apply("concatenate", list(inputs), axis=axis)


def decompose(graph: Graph, max_buffers: int | None = None) -> Graph:
    """`graph` with every node of an op in FALLBACKS replaced by its decomposition, and with
    `max_buffers` (a device's buffers per kernel) a concatenation of more operands than a
    kernel can bind as a tree of smaller ones."""
    def replace(node: Node, inputs):
        fallback = FALLBACKS.get(node.op)
        wide = node.op == "concatenate" and max_buffers is not None and \
            len(inputs) > max_buffers - 1
        if fallback is None and not wide:
            return None
        with site_of(node.site):
            if wide:
                return _concatenate_tree(list(inputs), node.attrs["axis"],
                                         max(2, max_buffers - 1))
            return fallback(node, inputs)
    return rebuild(graph, replace)
