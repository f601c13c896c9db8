"""ONNX pools on graphc's 2-D pools: 1-D as 2-D with a height of 1, 3-D as a 2-D pool over
(H, W) then one over D (max and sum are separable). Pads graphc's pools cannot take
(asymmetric, auto_pad, ceil_mode's extra row) become an explicit pad (-inf for max, 0 for
sums); an average divides each window's sum by ONNX's count, a constant computed at import
from the geometry."""
from __future__ import annotations

import functools

import numpy as np

import graphc as gc
from graphc import dtypes
from graphc.builder import cast, constant
from graphc.ir import Tensor
from graphc.onnx.ops.nn import window_attributes
from graphc.onnx.registry import NodeView, converter

POOL_ATTRS = ("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides")


def _check_rank(node: NodeView, x: Tensor) -> None:
    if x.ndim not in (3, 4, 5):
        raise node.unsupported(f"a {x.ndim - 2}-d {node.op_type} (graphc pools 1-, 2- and 3-d)")


def _pool_geometry(node: NodeView, x: Tensor):
    """(kernel, strides, dilations, pads), ceil_mode's extra rows added to the pads."""
    kernel = list(node.attr("kernel_shape"))
    strides, dilations, pads = window_attributes(node, x, kernel)
    if node.attr("ceil_mode", 0):
        pads = [(b, a + _ceil_extra(size, (k - 1) * d + 1, s, b, a))
                for size, k, s, d, (b, a) in zip(x.shape[2:], kernel, strides, dilations,
                                                 pads)]
    return kernel, strides, dilations, pads


def _ceil_extra(size: int, k: int, s: int, before: int, after: int) -> int:
    """Rows past the end that ceil_mode's last window (of extent k) reads (it must start
    inside the input or its leading pad)."""
    span = size + before + after - k
    out = -(-span // s) + 1
    if (out - 1) * s >= size + before:
        out -= 1
    return max((out - 1) * s + k - (size + before + after), 0)


def _dilated_pool(x: Tensor, kernel, strides, dilations, pads, kind: str) -> Tensor:
    """Any window geometry: each spatial axis's taps gathered (constant indices) into an
    axis of their own, then reduced."""
    fill = float("-inf") if kind == "max" else 0.0
    v = gc.pad(x, [(0, 0), (0, 0)] + [tuple(p) for p in pads], constant_values=fill)
    tap_axes = []
    for i, (k, s, d) in enumerate(zip(kernel, strides, dilations)):
        axis = 2 + 2 * i
        size = v.shape[axis]
        out = (size - (k - 1) * d - 1) // s + 1
        index = (np.arange(out)[:, None] * s + np.arange(k)[None, :] * d).reshape(-1)
        v = gc.take(v, constant(index.astype(np.int64)), axis)
        v = gc.reshape(v, v.shape[:axis] + (out, k) + v.shape[axis + 1:])
        tap_axes.append(axis + 1)
    reduce = gc.max if kind == "max" else gc.sum
    return reduce(v, tuple(tap_axes))


SLICED_TAPS = 9      # windows up to 3x3 reduce their taps as strided slices


def _sliced_pool(v: Tensor, kernel, strides, kind: str) -> Tensor:
    """Each window tap as a strided slice, reduced elementwise: one elementwise kernel
    (fused with what produced v), several times faster on PoCL than graphc's pool kernel
    for small windows. Ties in a max share its gradient evenly (max_pool2d's goes to the
    first maximum): both are subgradients."""
    (kh, kw), (sh, sw) = kernel, strides
    oh = (v.shape[2] - kh) // sh + 1
    ow = (v.shape[3] - kw) // sw + 1
    total = None
    for i in range(kh):
        for j in range(kw):
            tap = v[:, :, i:i + (oh - 1) * sh + 1:sh, j:j + (ow - 1) * sw + 1:sw]
            if total is None:
                total = tap
            else:
                total = gc.maximum(total, tap) if kind == "max" else total + tap
    return total


def _pool2d(v: Tensor, kernel, strides, pads, kind: str) -> Tensor:
    """A 2-D max or sum pool of NCHW v with (before, after) pads per spatial axis."""
    if kernel[0] * kernel[1] <= SLICED_TAPS:
        if any(map(any, pads)):
            fill = float("-inf") if kind == "max" else 0.0
            v = gc.pad(v, [(0, 0), (0, 0)] + [tuple(p) for p in pads], constant_values=fill)
        return _sliced_pool(v, kernel, strides, kind)
    native = all(b == a and 2 * b <= k for (b, a), k in zip(pads, kernel))
    if kind == "max" and native:
        return gc.max_pool2d(v, tuple(kernel), tuple(strides), tuple(b for b, _ in pads))
    if any(map(any, pads)):
        fill = float("-inf") if kind == "max" else 0.0
        v = gc.pad(v, [(0, 0), (0, 0)] + [tuple(p) for p in pads], constant_values=fill)
    if kind == "max":
        return gc.max_pool2d(v, tuple(kernel), tuple(strides), 0)
    return gc.avg_pool2d(v, tuple(kernel), tuple(strides), 0) * float(np.prod(kernel))


def pool(x: Tensor, kernel, strides, dilations, pads, kind: str) -> Tensor:
    """Max or sum over each window of a 1-, 2- or 3-d NC... tensor."""
    if any(d != 1 for d in dilations):
        return _dilated_pool(x, kernel, strides, dilations, pads, kind)
    n, c = x.shape[:2]
    if x.ndim == 3:
        y = _pool2d(gc.reshape(x, (n, c, 1, x.shape[2])), [1] + kernel, [1] + strides,
                    [(0, 0)] + pads, kind)
        return gc.reshape(y, (n, c, y.shape[3]))
    if x.ndim == 4:
        return _pool2d(x, kernel, strides, pads, kind)
    d, h, w = x.shape[2:]
    inner = _pool2d(gc.reshape(x, (n, c * d, h, w)), kernel[1:], strides[1:], pads[1:], kind)
    ho, wo = inner.shape[2:]
    outer = _pool2d(gc.reshape(inner, (n, c, d, ho * wo)), [kernel[0], 1], [strides[0], 1],
                    [pads[0], (0, 0)], kind)
    return gc.reshape(outer, (n, c, outer.shape[2], ho, wo))


@converter("MaxPool", attrs=POOL_ATTRS + ("storage_order",), max_outputs=2)
def _max_pool(node: NodeView) -> Tensor | list[Tensor]:
    x = node.input(0)
    _check_rank(node, x)
    geometry = _pool_geometry(node, x)
    v = x if dtypes.is_float(x.dtype) else cast(x, dtypes.float64)
    if node.n_outputs > 1 and node.output_name(1):
        if x.ndim != 4 or any(d != 1 for d in geometry[2]):
            raise node.unsupported("the Indices output of a pool that is not 2-d and dense")
        y, indices = _max_with_indices(v, geometry, node.attr("storage_order", 0))
        return [cast(y, x.dtype), indices]
    return cast(pool(v, *geometry, "max"), x.dtype)


def _max_with_indices(v: Tensor, geometry, column_major: bool) -> tuple[Tensor, Tensor]:
    """The maximum of each window and the flat index (into the unpadded input, row- or
    column-major per image plane) of its first occurrence in row-major window order."""
    (kh, kw), (sh, sw), _, pads = geometry
    n, c, h, w = v.shape
    padded = gc.pad(v, [(0, 0), (0, 0)] + [tuple(p) for p in pads],
                    constant_values=float("-inf"))
    oh = (padded.shape[2] - kh) // sh + 1
    ow = (padded.shape[3] - kw) // sw + 1
    taps = [padded[:, :, i:i + (oh - 1) * sh + 1:sh, j:j + (ow - 1) * sw + 1:sw]
            for i in range(kh) for j in range(kw)]
    stacked = gc.stack(taps, -1)
    tap = cast(gc.argmax(stacked, -1), dtypes.int64)
    row = gc.take(constant(np.repeat(np.arange(kh), kw).astype(np.int64)), tap, 0)
    col = gc.take(constant(np.tile(np.arange(kw), kh).astype(np.int64)), tap, 0)
    row = row + constant((np.arange(oh) * sh - pads[0][0]).astype(np.int64).reshape(oh, 1))
    col = col + constant((np.arange(ow) * sw - pads[1][0]).astype(np.int64).reshape(1, ow))
    plane = col * h + row if column_major else row * w + col
    base = (np.arange(n * c, dtype=np.int64) * h * w).reshape(n, c, 1, 1)
    return gc.max(stacked, -1), plane + constant(base)


def _window_counts(sizes, kernel, strides, dilations, pads, bounds) -> np.ndarray:
    """How many taps of each window fall in [lo, hi), per output position."""
    counts = []
    for size, k, s, d, (b, a), (lo, hi) in zip(sizes, kernel, strides, dilations, pads,
                                               bounds):
        starts = np.arange((size + b + a - (k - 1) * d - 1) // s + 1) * s - b
        taps = starts[:, None] + np.arange(k)[None, :] * d
        counts.append(((taps >= lo) & (taps < hi)).sum(axis=1))
    return functools.reduce(np.multiply.outer, counts)


@converter("AveragePool", attrs=POOL_ATTRS + ("count_include_pad",))
def _average_pool(node: NodeView) -> Tensor:
    x = node.input(0)
    _check_rank(node, x)
    geometry = _pool_geometry(node, x)
    declared = window_attributes(node, x, geometry[0])[2]
    include = bool(node.attr("count_include_pad", 0))
    bounds = [(-b, size + a) if include else (0, size)
              for size, (b, a) in zip(x.shape[2:], declared)]
    counts = _window_counts(x.shape[2:], *geometry, bounds)
    return pool(x, *geometry, "sum") * constant(np.asarray(1.0 / counts, x.dtype))


@converter("LpPool", attrs=POOL_ATTRS + ("p",))
def _lp_pool(node: NodeView) -> Tensor:
    x = node.input(0)
    _check_rank(node, x)
    p = float(node.attr("p", 2))
    return gc.power(pool(gc.power(gc.abs(x), p), *_pool_geometry(node, x), "sum"), 1.0 / p)


def _spatial_axes(x: Tensor) -> tuple[int, ...]:
    return tuple(range(2, x.ndim))


converter("GlobalAveragePool")(lambda node: gc.mean(node.input(0), _spatial_axes(node.input(0)),
                                                    keepdims=True))
converter("GlobalMaxPool")(lambda node: gc.max(node.input(0), _spatial_axes(node.input(0)),
                                               keepdims=True))


@converter("GlobalLpPool", attrs=("p",))
def _global_lp_pool(node: NodeView) -> Tensor:
    x, p = node.input(0), float(node.attr("p", 2))
    return gc.power(gc.sum(gc.power(gc.abs(x), p), _spatial_axes(x), keepdims=True), 1.0 / p)
