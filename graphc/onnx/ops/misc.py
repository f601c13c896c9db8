"""Less common ONNX ops built from graphc's gathers, scatters, products and constants:
Einsum, CumProd, ScatterElements / ScatterND, Compress, CenterCropPad, ReverseSequence,
DequantizeLinear and the window generators."""
from __future__ import annotations

import string

import numpy as np

import graphc as gc
from graphc import dtypes
from graphc.builder import apply, cast, constant
from graphc.ir import Tensor
from graphc.onnx import types
from graphc.onnx.ops.shape import axis_slice, constant_of
from graphc.onnx.registry import NodeView, converter


# ---- Einsum: operands aligned on one axis per letter, multiplied, summed ----

def _expand_ellipsis(term: str, ndim: int, letters: str) -> str:
    """'...ij' of a 4-d operand as 'XYij': its broadcast axes are the last of `letters`."""
    if "..." not in term:
        return term
    count = ndim - (len(term) - 3)
    return term.replace("...", letters[len(letters) - count:] if count else "")


@converter("Einsum", attrs=("equation",))
def _einsum(node: NodeView) -> Tensor:
    equation = node.attr("equation").replace(" ", "")
    lhs, _, rhs = equation.partition("->")
    terms = lhs.split(",")
    spare = "".join(c for c in string.ascii_uppercase if c not in equation)
    broadcast = max((x.ndim - (len(t) - 3) for t, x in zip(terms, node.inputs) if "..." in t),
                    default=0)
    spare = spare[:broadcast]
    terms = [_expand_ellipsis(t, x.ndim, spare) for t, x in zip(terms, node.inputs)]
    if "->" in equation:
        out = rhs.replace("...", spare)
    else:
        counts = {c: sum(t.count(c) for t in terms) for c in set("".join(terms))}
        out = spare + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in spare))
    if any(len(set(t)) != len(t) for t in terms):
        raise node.unsupported(f"equation {equation!r} (a repeated index within one operand)")
    if len(terms) == 2 and all(c in out or (c in terms[0] and c in terms[1])
                               for c in terms[0] + terms[1]):
        return _contract(node.inputs[0], node.inputs[1], terms[0], terms[1], out)
    order = out + "".join(sorted(set("".join(terms)) - set(out)))
    product = None
    for term, x in zip(terms, node.inputs):
        present = [c for c in order if c in term]
        moved = gc.transpose(x, tuple(term.index(c) for c in present)) if x.ndim else x
        sizes = {c: moved.shape[i] for i, c in enumerate(present)}
        aligned = gc.reshape(moved, tuple(sizes.get(c, 1) for c in order))
        product = aligned if product is None else product * aligned
    contracted = tuple(range(len(out), len(order)))
    return gc.sum(product, contracted) if contracted else product


def _contract(a: Tensor, b: Tensor, ta: str, tb: str, out: str) -> Tensor:
    """A two-operand einsum as one batched matmul: (batch, a's free, contracted) times
    (batch, contracted, b's free), then the output's axis order."""
    batch = [c for c in out if c in ta and c in tb]
    free_a = [c for c in out if c in ta and c not in tb]
    free_b = [c for c in out if c in tb and c not in ta]
    summed = [c for c in ta if c in tb and c not in out]
    size = {c: d for t, x in ((ta, a), (tb, b)) for c, d in zip(t, x.shape)}

    def arranged(x, term, letters, rows):
        moved = gc.transpose(x, tuple(term.index(c) for c in letters)) if x.ndim else x
        count = [int(np.prod([size[c] for c in group], dtype=np.int64)) for group in rows]
        return gc.reshape(moved, tuple(count))
    left = arranged(a, ta, batch + free_a + summed, (batch, free_a, summed))
    right = arranged(b, tb, batch + summed + free_b, (batch, summed, free_b))
    product = gc.reshape(gc.matmul(left, right), tuple(size[c] for c in batch + free_a + free_b))
    have = batch + free_a + free_b
    return gc.transpose(product, tuple(have.index(c) for c in out)) if have != list(out) \
        else product


# ---- CumProd ----

@converter("CumProd", attrs=("exclusive", "reverse"))
def _cumprod(node: NodeView) -> Tensor:
    x = node.input(0)
    axis = node.static_ints(1, "the axis")[0] % x.ndim
    n = x.shape[axis]
    steps = list(range(n - 1, -1, -1)) if node.attr("reverse", 0) else list(range(n))
    running, parts = None, {}
    for i in steps:
        piece = axis_slice(x, axis, i, i + 1)
        if node.attr("exclusive", 0):
            parts[i] = gc.ones_like(piece) if running is None else running
            running = piece if running is None else running * piece
        else:
            running = piece if running is None else running * piece
            parts[i] = running
    return gc.concatenate([parts[i] for i in range(n)], axis) if n > 1 else parts[0]


# ---- scatters: a scatter-add (take's gradient op) into the flattened data ----

def _scatter(node: NodeView, data: Tensor, flat: Tensor, updates: Tensor) -> Tensor:
    reduction = node.attr("reduction", "none")
    size = data.size
    flat_data = gc.reshape(data, (size,))
    flat_index = gc.reshape(flat, (flat.size,))
    added = apply("take_grad", [gc.reshape(updates, (updates.size,)), flat_index], axis=0,
                  shape=(size,))
    if reduction == "add":
        return gc.reshape(flat_data + added, data.shape)
    if reduction != "none":
        raise node.unsupported(f"reduction={reduction!r}")
    ones = gc.ones_like(gc.reshape(updates, (updates.size,)))
    hit = apply("take_grad", [ones, flat_index], axis=0, shape=(size,)) > 0
    return gc.reshape(gc.where(hit, added, flat_data), data.shape)


def _wrapped(indices: Tensor, dim: int) -> Tensor:
    indices = cast(indices, dtypes.int64)
    return gc.where(indices < 0, indices + dim, indices)


def _strides(shape) -> list[int]:
    return [int(s) for s in np.cumprod((tuple(shape[1:]) + (1,))[::-1])[::-1]]


@converter("ScatterElements", "Scatter", attrs=("axis", "reduction"))
def _scatter_elements(node: NodeView) -> Tensor:
    data, indices, updates = node.input(0), node.input(1), node.input(2)
    axis = node.attr("axis", 0) % data.ndim
    flat = None
    for d, stride in enumerate(_strides(data.shape)):
        if d == axis:
            coord = _wrapped(indices, data.shape[d])
        else:
            view = [1] * indices.ndim
            view[d] = indices.shape[d]
            coord = constant(np.arange(indices.shape[d], dtype=np.int64).reshape(view))
        flat = coord * stride if flat is None else flat + coord * stride
    return _scatter(node, data, gc.broadcast_to(flat, indices.shape), updates)


@converter("ScatterND", attrs=("reduction",))
def _scatter_nd(node: NodeView) -> Tensor:
    data, indices, updates = node.input(0), node.input(1), node.input(2)
    k = indices.shape[-1]
    strides = _strides(data.shape)
    rows = None
    for j in range(k):
        column = gc.reshape(axis_slice(indices, indices.ndim - 1, j, j + 1), indices.shape[:-1])
        term = _wrapped(column, data.shape[j]) * strides[j]
        rows = term if rows is None else rows + term
    inner = int(np.prod(data.shape[k:], dtype=np.int64))
    offsets = constant(np.arange(inner, dtype=np.int64))
    flat = gc.reshape(rows, indices.shape[:-1] + (1,)) + offsets
    return _scatter(node, data, flat, updates)


# ---- static gathers ----

def _gather_static(x: Tensor, flat_index: np.ndarray) -> Tensor:
    """x's elements at the flat positions `flat_index` (a numpy array of the output shape)."""
    return gc.take(gc.reshape(x, (x.size,)), constant(flat_index.astype(np.int64)), 0)


@converter("Compress", attrs=("axis",))
def _compress(node: NodeView) -> Tensor:
    x = node.input(0)
    keep = np.flatnonzero(np.asarray(node.static(1, "the condition")).reshape(-1))
    axis = node.attr("axis")
    if axis is None:
        return gc.take(gc.reshape(x, (x.size,)), constant(keep.astype(np.int64)), 0)
    return gc.take(x, constant(keep.astype(np.int64)), axis % x.ndim)


@converter("CenterCropPad", attrs=("axes",))
def _center_crop_pad(node: NodeView) -> Tensor:
    x = node.input(0)
    target = node.static_ints(1, "the shape")
    axes = [a % x.ndim for a in (node.attr("axes") or range(x.ndim))]
    for axis, size in zip(axes, target):
        dim = x.shape[axis]
        if size < dim:
            start = (dim - size) // 2
            x = axis_slice(x, axis, start, start + size)
        elif size > dim:
            before = (size - dim) // 2
            widths = [(0, 0)] * x.ndim
            widths[axis] = (before, size - dim - before)
            x = gc.pad(x, widths)
    return x


@converter("ReverseSequence", attrs=("batch_axis", "time_axis"))
def _reverse_sequence(node: NodeView) -> Tensor:
    x = node.input(0)
    lens = np.asarray(node.static(1, "sequence_lens")).reshape(-1)
    batch_axis, time_axis = node.attr("batch_axis", 1), node.attr("time_axis", 0)
    coords = list(np.indices(x.shape))
    t, b = coords[time_axis], coords[batch_axis]
    n = lens[b]
    coords[time_axis] = np.where(t < n, n - 1 - t, t)
    return _gather_static(x, np.ravel_multi_index(coords, x.shape))


# ---- quantization ----

def _per_axis(node: NodeView, x: Tensor, scale: Tensor):
    """A function shaping per-axis (1-d) parameters to broadcast along `axis` of x."""
    if node.attr("block_size", 0):
        raise node.unsupported("block_size (blocked quantization)")
    axis = node.attr("axis", 1) % max(x.ndim, 1)
    view = [1] * x.ndim
    if scale.ndim == 1 and scale.shape[0] > 1:
        view[axis] = scale.shape[0]
    return lambda p: gc.reshape(p, tuple(view)) if p.ndim == 1 and p.shape[0] > 1 else p


@converter("QuantizeLinear", attrs=("axis", "block_size", "output_dtype", "precision",
                                    "saturate"))
def _quantize(node: NodeView) -> Tensor:
    """round(x / scale) + zero_point, saturated to the output type (the zero point's, or
    output_dtype, or uint8)."""
    from graphc.onnx.ops.elementwise import round_half_even
    from graphc.onnx.ops.shape import cast_to
    x, scale, zero = node.input(0), node.input(1), node.input(2)
    shaped = _per_axis(node, x, scale)
    to = node.attr("output_dtype") or node.input_type(2) or types.UINT8
    wide = dtypes.float32 if x.dtype == dtypes.float16 else x.dtype
    v = cast(x, wide) / cast(shaped(scale), wide)
    if to in types.STORAGE_FLOATS:
        if zero is not None:
            v = v + cast(shaped(zero), wide)
        return cast_to(node, v, to)
    v = round_half_even(v)
    if zero is not None:
        v = v + cast(shaped(zero), wide)
    low, high = types.integer_range(to)
    return cast(gc.clip(v, float(low), float(high)), types.compute_dtype(to))


@converter("DequantizeLinear", attrs=("axis", "block_size", "output_dtype"))
def _dequantize(node: NodeView) -> Tensor:
    x, scale, zero = node.input(0), node.input(1), node.input(2)
    shaped = _per_axis(node, x, scale)
    v = cast(x, scale.dtype)
    if zero is not None:
        v = v - cast(shaped(zero), scale.dtype)
    y = v * shaped(scale)
    if "output_dtype" in node.attrs:
        y = cast(y, types.compute_dtype(node.attr("output_dtype")))
    return y


# ---- windows ----

def _window(coefficients):
    def convert(node: NodeView) -> Tensor:
        size = int(np.asarray(node.static(0, "the size")).reshape(-1)[0])
        span = size if node.attr("periodic", 1) else size - 1
        n = np.arange(size, dtype=np.float64)
        angle = 2 * np.pi * n / span if span else np.zeros(size)
        values = sum(c * np.cos(k * angle) for k, c in enumerate(coefficients))
        dtype = types.numpy_dtype(node.attr("output_datatype", types.FLOAT))
        return constant_of(values.astype(dtype))
    return convert


converter("HannWindow", attrs=("output_datatype", "periodic"))(_window([0.5, -0.5]))
converter("HammingWindow", attrs=("output_datatype", "periodic"))(
    _window([25 / 46, -21 / 46]))
converter("BlackmanWindow", attrs=("output_datatype", "periodic"))(_window([0.42, -0.5, 0.08]))


# ---- affine grids ----

def _grid_axis(n: int, align_corners: bool) -> np.ndarray:
    if align_corners:
        return np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)
    return (np.arange(n) * 2.0 + 1.0) / n - 1.0


@converter("AffineGrid", attrs=("align_corners",))
def _affine_grid(node: NodeView) -> Tensor:
    """theta (N, d, d+1) applied to the normalized coordinates of every output position,
    (x, y[, z]) order, as a product with a constant base grid."""
    theta = node.input(0)
    size = node.static_ints(1, "the size")
    spatial = size[2:]
    align = bool(node.attr("align_corners", 0))
    axes = [_grid_axis(n, align) for n in spatial]
    mesh = np.meshgrid(*axes, indexing="ij")                 # D, H, W order
    columns = [m.reshape(-1) for m in reversed(mesh)]         # x first
    base = np.stack(columns + [np.ones_like(columns[0])], axis=1).astype(theta.dtype)
    grid = gc.matmul(constant(base), gc.transpose(theta, (0, 2, 1)))   # (N, P, d)
    return gc.reshape(grid, (theta.shape[0],) + tuple(spatial) + (len(spatial),))
