"""ONNX GridSample (2-D and 3-D; nearest, linear and cubic; zeros, border and reflection
padding), as data-dependent gathers: every output position reads the input at the taps
around its grid coordinate (computed on the device from the grid), weighted by the
interpolation coefficients of that coordinate's fraction."""
from __future__ import annotations

import itertools

import numpy as np

import graphc as gc
from graphc import dtypes
from graphc.builder import cast, constant
from graphc.ir import Tensor
from graphc.onnx.ops.elementwise import floor, round_half_even, trunc
from graphc.onnx.ops.shape import axis_slice
from graphc.onnx.registry import NodeView, converter

CUBIC_A = -0.75


def _reflect(v: Tensor, low: float, high: float) -> Tensor:
    """v folded back into [low, high] by reflecting at the borders (ONNX's rule: the
    parity of the number of whole spans past the border picks the side)."""
    span = high - low

    def fold(distance, near, far):
        n = floor(distance / span)
        r = distance - n * span
        even = gc.equal(n - 2.0 * floor(n * 0.5), 0.0)
        return gc.where(even, near + r, far - r)
    below = fold(low - v, low, high)            # near + r: low + r;  far - r: high - r
    above = fold(v - high, -high, -low)         # -(high - r) or -(low + r), negated below
    return gc.where(v < low, below, gc.where(v > high, -above, v))


def _cubic_weights(t: Tensor) -> list[Tensor]:
    a = CUBIC_A

    def near(x):
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]


def _pixel_index(i: Tensor, size: int, padding: str, low: float, high: float):
    """(index to read, whether it counts) of integer-valued float tap positions."""
    if padding == "reflection":
        i = trunc(_reflect(i, low, high))
    inside = gc.logical_and(i >= 0.0, i <= size - 1.0)
    clamped = cast(gc.clip(i, 0.0, size - 1.0), dtypes.int64)
    return clamped, (inside if padding == "zeros" else None)


@converter("GridSample", attrs=("align_corners", "mode", "padding_mode"))
def _grid_sample(node: NodeView) -> Tensor:
    x, grid = node.input(0), node.input(1)
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(node.attr("mode", "linear"),
                                                          node.attr("mode", "linear"))
    padding = node.attr("padding_mode", "zeros")
    align = bool(node.attr("align_corners", 0))
    n, c = x.shape[:2]
    dims = x.shape[2:]
    if mode not in ("nearest", "linear", "cubic") or padding not in ("zeros", "border",
                                                                    "reflection"):
        raise node.unsupported(f"mode={mode!r} padding_mode={padding!r}")
    g = grid if dtypes.is_float(grid.dtype) else cast(grid, dtypes.float32)
    per_dim = []
    for d, size in enumerate(dims):
        coord = gc.squeeze(axis_slice(g, g.ndim - 1, len(dims) - 1 - d, len(dims) - d), -1)
        coord = (coord + 1.0) * 0.5 * (size - 1) if align else ((coord + 1.0) * size - 1.0) * 0.5
        low, high = (0.0, size - 1.0) if align else (-0.5, size - 0.5)
        if mode == "nearest":
            coord = round_half_even(coord)
        if padding == "border":
            coord = gc.clip(coord, 0.0, size - 1.0)
        elif padding == "reflection":
            coord = _reflect(coord, low, high)
        per_dim.append(_taps(coord, mode, size, padding, low, high))
    return _gather_taps(x, per_dim)


def _taps(coord: Tensor, mode: str, size: int, padding: str, low: float, high: float):
    """[(index, weight or None)] of one spatial dim's taps."""
    if mode == "nearest":
        return [(*_pixel_index(coord, size, padding, low, high), None)]
    base = floor(coord)
    t = coord - base
    if mode == "linear":
        offsets, weights = (0.0, 1.0), [1.0 - t, t]
    else:
        offsets, weights = (-1.0, 0.0, 1.0, 2.0), _cubic_weights(t)
    return [(*_pixel_index(base + o, size, padding, low, high), w)
            for o, w in zip(offsets, weights)]


def _gather_taps(x: Tensor, per_dim) -> Tensor:
    n, c = x.shape[:2]
    dims = x.shape[2:]
    strides = np.cumprod((dims[1:] + (1,))[::-1])[::-1]
    flat_x = gc.reshape(x, (x.size,))
    out_shape = per_dim[0][0][0].shape                   # (N, *out)
    batch = constant((np.arange(n, dtype=np.int64) * c * int(np.prod(dims)))
                     .reshape((n,) + (1,) * len(out_shape)))
    channel = constant((np.arange(c, dtype=np.int64) * int(np.prod(dims)))
                       .reshape((1, c) + (1,) * (len(out_shape) - 1)))
    total = None
    for combo in itertools.product(*per_dim):
        flat = None
        weight = None
        for (index, inside, w), stride in zip(combo, strides):
            term = index * int(stride)
            flat = term if flat is None else flat + term
            factor = w if inside is None else (cast(inside, x.dtype) if w is None
                                               else w * cast(inside, x.dtype))
            if factor is not None:
                weight = factor if weight is None else weight * factor
        index = gc.expand_dims(flat, 1) + batch + channel
        values = gc.take(flat_x, index, 0)
        if weight is not None:
            values = values * gc.expand_dims(cast(weight, x.dtype), 1)
        total = values if total is None else total + values
    return total
