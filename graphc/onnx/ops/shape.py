"""ONNX shape and data-movement ops: constants, reshapes, slices, gathers, pads, casts.

Shapes are static in graphc, so Shape and Size give constants and the arithmetic ONNX
exporters build on them folds away at import. Operands that fix a shape (Reshape's shape,
Slice's starts, Pad's pads, ...) must therefore be known at import: constants and
initializers are; a graph input is bound by value (see NeedsValue).
"""
from __future__ import annotations

import numpy as np

import graphc as gc
from graphc import dtypes
from graphc.builder import cast, constant
from graphc.ir import Tensor
from graphc.onnx import types
from graphc.onnx.registry import NodeView, converter
from graphc.ops.indexing import slice_tensor


def constant_of(array: np.ndarray) -> Tensor:
    """A graphc constant of an ONNX value, in the dtype ONNX's type is computed in."""
    array = np.asarray(array)
    return constant(array.astype(types.compute_dtype_of_array(array)))


def tensor_attr(node: NodeView, value) -> np.ndarray:
    from onnx import numpy_helper
    return numpy_helper.to_array(value)


@converter("Constant", attrs=("value", "value_float", "value_floats", "value_int",
                              "value_ints"))
def _constant(node: NodeView) -> Tensor:
    for name, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                        ("value_int", np.int64), ("value_ints", np.int64)):
        if name in node.attrs:
            return constant_of(np.asarray(node.attrs[name], dtype))
    if "value" not in node.attrs:
        raise node.unsupported("a Constant needs value, value_float(s) or value_int(s)")
    return constant_of(tensor_attr(node, node.attrs["value"]))


@converter("ConstantOfShape", attrs=("value",))
def _constant_of_shape(node: NodeView) -> Tensor:
    shape = node.static_ints(0, "the shape")
    value = node.attrs.get("value")
    fill = tensor_attr(node, value).reshape(-1) if value is not None else np.zeros(1, np.float32)
    return constant_of(np.full(shape, fill[0], fill.dtype))


@converter("Shape", attrs=("start", "end"))
def _shape(node: NodeView) -> Tensor:
    shape = node.input(0).shape
    start, end = node.attr("start", 0), node.attr("end", len(shape))
    return constant(np.asarray(shape[start:end], np.int64))


@converter("Size")
def _size(node: NodeView) -> Tensor:
    return constant(np.asarray(node.input(0).size, np.int64))


def cast_to(node: NodeView, x: Tensor, to: int) -> Tensor:
    """x converted to ONNX type `to`: a storage-only target is rounded on the host when
    the value leaves the model, so it must be a graph output; float8 saturates here."""
    if not types.is_storage_only(to):
        return cast(x, types.compute_dtype(to))
    if not node.is_graph_output(0):
        raise node.unsupported(f"a cast to {types.type_name(to)} that is not a graph output"
                               f" (graphc rounds to that type only when a value leaves the"
                               f" model)")
    if to in types.STORAGE_INTS:
        return cast(x, dtypes.int32)
    y = cast(x, dtypes.float32)
    if to != types.BFLOAT16 and to != types.FLOAT4E2M1 and node.attr("saturate", 1):
        top = types.finite_max(to)
        y = gc.clip(y, -top, top)
    return y


@converter("Cast", attrs=("to", "saturate"))
def _cast(node: NodeView) -> Tensor:
    return cast_to(node, node.input(0), node.attr("to"))


@converter("CastLike", attrs=("saturate",))
def _cast_like(node: NodeView) -> Tensor:
    target = node.input_type(1)
    if target is not None:
        return cast_to(node, node.input(0), target)
    return cast(node.input(0), node.input(1).dtype)


# ---- reshapes ----

@converter("Reshape", attrs=("allowzero",))
def _reshape(node: NodeView) -> Tensor:
    x, shape = node.input(0), node.static_ints(1, "the shape")
    if not node.attr("allowzero", 0):
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return gc.reshape(x, tuple(shape))


@converter("Flatten", attrs=("axis",))
def _flatten(node: NodeView) -> Tensor:
    x = node.input(0)
    axis = node.attr("axis", 1)
    axis = axis + x.ndim if axis < 0 else axis
    rows = int(np.prod(x.shape[:axis], dtype=np.int64))
    return gc.reshape(x, (rows, int(np.prod(x.shape[axis:], dtype=np.int64))))


def _axes(node: NodeView, ndim: int, index: int = 1) -> list[int] | None:
    """Axes from the attribute (older opsets) or the input (newer), normalized."""
    axes = node.attr("axes") if "axes" in node.attrs else node.static_ints(index, "the axes")
    return None if axes is None else [a % ndim if ndim else 0 for a in axes]


@converter("Squeeze", attrs=("axes",))
def _squeeze(node: NodeView) -> Tensor:
    x = node.input(0)
    axes = _axes(node, x.ndim)
    return gc.squeeze(x, None if axes is None else tuple(axes))


@converter("Unsqueeze", attrs=("axes",))
def _unsqueeze(node: NodeView) -> Tensor:
    x = node.input(0)
    count = len(node.attr("axes") or node.static_ints(1, "the axes"))
    axes = sorted(_axes(node, x.ndim + count))
    shape, dims = [], iter(x.shape)
    for i in range(x.ndim + count):
        shape.append(1 if i in axes else next(dims))
    return gc.reshape(x, tuple(shape))


@converter("Transpose", attrs=("perm",))
def _transpose(node: NodeView) -> Tensor:
    x = node.input(0)
    perm = node.attr("perm")
    return gc.transpose(x, None if perm is None else tuple(perm))


@converter("Expand")
def _expand(node: NodeView) -> Tensor:
    x, shape = node.input(0), node.static_ints(1, "the shape")
    out = np.broadcast_shapes(x.shape, tuple(shape))
    return gc.broadcast_to(x, out) if out != x.shape else x


@converter("Tile")
def _tile(node: NodeView) -> Tensor:
    x, repeats = node.input(0), node.static_ints(1, "the repeats")
    spread = tuple(v for d in x.shape for v in (1, d))
    wide = tuple(v for r, d in zip(repeats, x.shape) for v in (r, d))
    tiled = gc.broadcast_to(gc.reshape(x, spread), wide)
    return gc.reshape(tiled, tuple(r * d for r, d in zip(repeats, x.shape)))


@converter("DepthToSpace", attrs=("blocksize", "mode"))
def _depth_to_space(node: NodeView) -> Tensor:
    x, b = node.input(0), node.attr("blocksize")
    n, c, h, w = x.shape
    if node.attr("mode", "DCR") == "DCR":
        y = gc.transpose(gc.reshape(x, (n, b, b, c // (b * b), h, w)), (0, 3, 4, 1, 5, 2))
    else:
        y = gc.transpose(gc.reshape(x, (n, c // (b * b), b, b, h, w)), (0, 1, 4, 2, 5, 3))
    return gc.reshape(y, (n, c // (b * b), h * b, w * b))


@converter("SpaceToDepth", attrs=("blocksize",))
def _space_to_depth(node: NodeView) -> Tensor:
    x, b = node.input(0), node.attr("blocksize")
    n, c, h, w = x.shape
    y = gc.transpose(gc.reshape(x, (n, c, h // b, b, w // b, b)), (0, 3, 5, 1, 2, 4))
    return gc.reshape(y, (n, c * b * b, h // b, w // b))


# ---- joins and splits ----

@converter("Concat", attrs=("axis",))
def _concat(node: NodeView) -> Tensor:
    parts = [x for x in node.inputs if x is not None]
    axis = node.attr("axis") % parts[0].ndim
    kept = [x for x in parts if x.shape[axis] != 0] or parts[:1]
    return kept[0] if len(kept) == 1 else gc.concatenate(kept, axis)


def axis_slice(x: Tensor, axis: int, start: int, stop: int, step: int = 1) -> Tensor:
    starts = [0] * x.ndim
    stops = list(x.shape)
    steps = [1] * x.ndim
    starts[axis], stops[axis], steps[axis] = start, stop, step
    return slice_tensor(x, starts, stops, steps)


@converter("Split", attrs=("axis", "split", "num_outputs"), max_outputs=1 << 16)
def _split(node: NodeView) -> list[Tensor]:
    x = node.input(0)
    axis = node.attr("axis", 0) % x.ndim
    sizes = node.attr("split") if "split" in node.attrs else node.static_ints(1, "the split")
    if sizes is None:
        count = node.attr("num_outputs", node.n_outputs)
        each = -(-x.shape[axis] // count)
        sizes = [min(each, x.shape[axis] - i * each) for i in range(count)]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    return [axis_slice(x, axis, int(a), int(b)) for a, b in zip(offsets[:-1], offsets[1:])]


def _clamped_range(start: int, end: int, step: int, dim: int) -> tuple[int, int, int]:
    """ONNX Slice's clamping, as a range(start, stop, step) of valid indices."""
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        return min(max(start, 0), dim), min(max(end, 0), dim), step
    return min(max(start, -1), dim - 1), min(max(end, -1), dim - 1), step


@converter("Slice", attrs=("starts", "ends", "axes"))
def _slice(node: NodeView) -> Tensor:
    x = node.input(0)
    if node.opset < 10:
        starts, ends, axes = node.attr("starts"), node.attr("ends"), node.attr("axes")
        steps = None
    else:
        starts, ends = node.static_ints(1, "the starts"), node.static_ints(2, "the ends")
        axes, steps = node.static_ints(3, "the axes"), node.static_ints(4, "the steps")
    axes = list(range(len(starts))) if axes is None else [a % x.ndim for a in axes]
    steps = steps or [1] * len(starts)
    begin, stop, stride = [0] * x.ndim, list(x.shape), [1] * x.ndim
    for axis, s, e, st in zip(axes, starts, ends, steps):
        if st == 0:
            raise node.unsupported("a step of 0")
        begin[axis], stop[axis], stride[axis] = _clamped_range(s, e, st, x.shape[axis])
    return slice_tensor(x, begin, stop, stride)


# ---- gathers ----

@converter("Gather", attrs=("axis",))
def _gather(node: NodeView) -> Tensor:
    x, indices = node.input(0), node.input(1)
    return gc.take(x, indices, node.attr("axis", 0) % x.ndim)


def _coordinate(shape: tuple[int, ...], axis: int) -> Tensor:
    """The index along `axis` of every position of `shape`, as a broadcastable int64 constant."""
    view = [1] * len(shape)
    view[axis] = shape[axis]
    return constant(np.arange(shape[axis], dtype=np.int64).reshape(view))


def _wrapped(indices: Tensor, dim: int) -> Tensor:
    indices = cast(indices, dtypes.int64)
    return gc.where(indices < 0, indices + dim, indices)


@converter("GatherElements", attrs=("axis",))
def _gather_elements(node: NodeView) -> Tensor:
    x, indices = node.input(0), node.input(1)
    axis = node.attr("axis", 0) % x.ndim
    strides = np.cumprod((x.shape[1:] + (1,))[::-1])[::-1]
    flat = None
    for d in range(x.ndim):
        coord = _wrapped(indices, x.shape[d]) if d == axis else _coordinate(indices.shape, d)
        term = coord * int(strides[d])
        flat = term if flat is None else flat + term
    return gc.take(gc.reshape(x, (x.size,)), gc.broadcast_to(flat, indices.shape), 0)


@converter("GatherND", attrs=("batch_dims",))
def _gather_nd(node: NodeView) -> Tensor:
    x, indices = node.input(0), node.input(1)
    b, k = node.attr("batch_dims", 0), indices.shape[-1]
    lead = x.shape[:b + k]
    rows = gc.reshape(x, (int(np.prod(lead, dtype=np.int64)),) + x.shape[b + k:])
    strides = np.cumprod((lead[1:] + (1,))[::-1])[::-1]
    out_index = indices.shape[:-1]
    flat = gc.zeros(out_index, dtypes.int64)
    for d in range(b):
        flat = flat + _coordinate(out_index, d) * int(strides[d])
    for j in range(k):
        column = gc.reshape(axis_slice(indices, indices.ndim - 1, j, j + 1), out_index)
        flat = flat + _wrapped(column, lead[b + j]) * int(strides[b + j])
    return gc.take(rows, flat, 0)


# ---- pads ----

def _pad_indices(dim: int, before: int, after: int, mode: str) -> np.ndarray:
    positions = np.arange(-before, dim + after)
    if mode == "edge":
        return np.clip(positions, 0, dim - 1)
    if mode == "wrap":
        return positions % dim
    period = 2 * (dim - 1) if dim > 1 else 1                     # reflect
    folded = positions % period
    return np.where(folded >= dim, period - folded, folded)


@converter("Pad", attrs=("mode", "pads", "value"))
def _pad(node: NodeView) -> Tensor:
    x = node.input(0)
    mode = node.attr("mode", "constant")
    pads = node.attr("pads") if node.opset < 11 else node.static_ints(1, "the pads")
    axes = list(range(x.ndim)) if node.opset < 18 or not node.has(3) else \
        [a % x.ndim for a in node.static_ints(3, "the axes")]
    widths = [[0, 0] for _ in range(x.ndim)]
    for i, axis in enumerate(axes):
        widths[axis] = [pads[i], pads[i + len(axes)]]
    cropped = [(max(-b, 0), x.shape[a] - max(-e, 0)) for a, (b, e) in enumerate(widths)]
    if any(lo != 0 or hi != d for (lo, hi), d in zip(cropped, x.shape)):
        x = slice_tensor(x, [lo for lo, _ in cropped], [hi for _, hi in cropped], [1] * x.ndim)
    widths = [(max(b, 0), max(e, 0)) for b, e in widths]
    if mode == "constant":
        value = node.attr("value", 0.0) if node.opset < 11 else node.static(2, "the value")
        value = 0 if value is None or np.size(value) == 0 else np.asarray(value).reshape(-1)[0]
        return gc.pad(x, widths, constant_values=value) if any(map(any, widths)) else x
    if mode not in ("reflect", "edge", "wrap"):
        raise node.unsupported(f"mode={mode!r}")
    for axis, (before, after) in enumerate(widths):
        if before or after:
            index = _pad_indices(x.shape[axis], before, after, mode)
            x = gc.take(x, constant(index.astype(np.int64)), axis)
    return x
