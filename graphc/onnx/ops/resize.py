"""ONNX Resize as separable products: along each resized axis, the output is a fixed
weighted sum of input positions (nearest: one tap; linear: two; cubic: four; antialiased:
a kernel widened by 1/scale), so the weights are a matrix computed at import from the
geometry, and the device does one product per axis. Positions outside the input (only
tf_crop_and_resize has them) take extrapolation_value."""
from __future__ import annotations

import math

import numpy as np

import graphc as gc
from graphc import dtypes
from graphc.builder import cast, constant
from graphc.ir import Tensor
from graphc.onnx.ops.elementwise import round_half_even
from graphc.onnx.registry import NodeView, converter

ATTRS = ("antialias", "axes", "coordinate_transformation_mode", "cubic_coeff_a",
         "exclude_outside", "extrapolation_value", "keep_aspect_ratio_policy", "mode",
         "nearest_mode")


def _source(i: int, n_in: int, n_out: int, scale: float, mode: str, roi) -> float:
    """The input coordinate output position i reads (ONNX's coordinate transformations)."""
    width = scale * n_in
    if mode == "align_corners":
        return 0.0 if width == 1 else i * (n_in - 1) / (width - 1)
    if mode == "asymmetric":
        return i / scale
    if mode == "tf_crop_and_resize":
        start, end = roi
        if width == 1:
            return (end - start) * (n_in - 1) / 2 + start * (n_in - 1)
        return i * (end - start) * (n_in - 1) / (width - 1) + start * (n_in - 1)
    if mode == "pytorch_half_pixel":
        return -0.5 if width == 1 else (i + 0.5) / scale - 0.5
    if mode == "half_pixel":
        return (i + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - n_out / width)
        return offset + (i + 0.5) / scale - 0.5
    raise ValueError(mode)


def _cubic(x: float, a: float) -> float:
    x = abs(x)
    if x <= 1:
        return (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1
    return a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a if x < 2 else 0.0


def _taps(ratio: float, scale: float, attrs: dict) -> np.ndarray:
    """The weights of the taps around a source coordinate whose fractional part is ratio
    (1 for an integer coordinate), nearest first-of-pair convention."""
    mode = attrs["mode"]
    if mode == "nearest":
        if ratio == 1 or float(ratio).is_integer():
            return np.array([0.0, 1.0])
        rule = attrs["nearest_mode"]
        up = {"round_prefer_floor": ratio > 0.5, "round_prefer_ceil": ratio >= 0.5,
              "floor": False, "ceil": True}[rule]
        return np.array([0.0, 1.0]) if up else np.array([1.0, 0.0])
    narrow = attrs["antialias"] and scale < 1
    if mode == "linear":
        if not narrow:
            return np.array([1 - ratio, ratio])
        start = math.floor(-1 / scale) + 1
        args = (np.arange(start, 2 - start) - ratio) * scale
        weights = np.clip(1 - np.abs(args), 0, 1)
        return weights / weights.sum()
    a = attrs["cubic_coeff_a"]
    if not narrow:
        return np.array([_cubic(ratio + 1, a), _cubic(ratio, a), _cubic(1 - ratio, a),
                         _cubic(2 - ratio, a)])
    start = math.floor(-2 / scale) + 1
    weights = np.array([_cubic(scale * (i - ratio), a) for i in range(start, 2 - start)])
    return weights / weights.sum()


def weight_matrix(n_in: int, n_out: int, scale: float, attrs: dict, roi):
    """(n_out, n_in) weights, and which outputs lie inside the input (tf_crop_and_resize)."""
    matrix = np.zeros((n_out, n_in))
    inside = np.ones(n_out, bool)
    for i in range(n_out):
        x = _source(i, n_in, n_out, scale, attrs["coordinate_transformation_mode"], roi)
        if attrs["coordinate_transformation_mode"] == "tf_crop_and_resize" and \
                not 0 <= x <= n_in - 1:
            inside[i] = False
            continue
        ratio = 1.0 if float(x).is_integer() else x - math.floor(x)
        taps = _taps(ratio, scale, attrs)
        n = len(taps)
        base = min(max(math.ceil(x) - n // 2, -(n // 2)), n_in - n // 2)
        index = np.arange(base, base + n)
        if attrs["exclude_outside"]:
            taps = np.where((index < 0) | (index >= n_in), 0.0, taps)
            taps = taps / taps.sum()
        np.add.at(matrix[i], np.clip(index, 0, n_in - 1), taps)
    return matrix, inside


def _plan(node: NodeView, x: Tensor):
    """Per axis (n_out, scale, roi) after scales/sizes, axes and the aspect-ratio policy."""
    axes = [a % x.ndim for a in (node.attr("axes") or range(x.ndim))]
    roi = node.static(1, "the roi") if node.opset >= 11 else None
    scales = node.static(2 if node.opset >= 11 else 1, "the scales")
    sizes = node.static(3, "the sizes") if node.opset >= 11 else None
    n_in = [x.shape[a] for a in axes]
    if sizes is not None and np.size(sizes):
        sizes = [int(s) for s in np.asarray(sizes).reshape(-1)]
        policy = node.attr("keep_aspect_ratio_policy", "stretch")
        if policy == "stretch":
            scales = [s / n for s, n in zip(sizes, n_in)]
        else:
            pick = min if policy == "not_larger" else max
            common = pick(s / n for s, n in zip(sizes, n_in))
            scales = [common] * len(axes)
            sizes = [int(round(common * n)) for n in n_in]
    else:
        scales = [float(s) for s in np.asarray(scales).reshape(-1)]
        sizes = [int(math.floor(n * s)) for n, s in zip(n_in, scales)]
    rois = [(0.0, 1.0)] * len(axes)
    if roi is not None and np.size(roi):
        flat = np.asarray(roi, np.float64).reshape(-1)
        half = len(flat) // 2
        rois = list(zip(flat[:half], flat[half:]))
        rois = rois if half == len(axes) else [rois[a] for a in axes]
    return list(zip(axes, sizes, scales, rois))


def _along(y: Tensor, axis: int, matrix: np.ndarray) -> Tensor:
    perm = list(range(y.ndim))
    perm[axis], perm[-1] = perm[-1], perm[axis]
    moved = gc.transpose(y, tuple(perm)) if axis != y.ndim - 1 else y
    out = gc.matmul(moved, constant(matrix.T.astype(y.dtype)))
    return gc.transpose(out, tuple(perm)) if axis != y.ndim - 1 else out


@converter("Resize", attrs=ATTRS)
def _resize(node: NodeView) -> Tensor:
    x = node.input(0)
    attrs = {"mode": node.attr("mode", "nearest"), "antialias": node.attr("antialias", 0),
             "coordinate_transformation_mode": node.attr("coordinate_transformation_mode",
                                                         "half_pixel" if node.opset >= 11
                                                         else "asymmetric"),
             "cubic_coeff_a": node.attr("cubic_coeff_a", -0.75),
             "exclude_outside": node.attr("exclude_outside", 0),
             "nearest_mode": node.attr("nearest_mode", "round_prefer_floor")}
    if attrs["mode"] not in ("nearest", "linear", "cubic"):
        raise node.unsupported(f"mode={attrs['mode']!r}")
    y = x if dtypes.is_float(x.dtype) else cast(x, dtypes.float32)
    inside_all = np.ones([1] * x.ndim, bool)
    for axis, n_out, scale, roi in _plan(node, x):
        matrix, inside = weight_matrix(x.shape[axis], n_out, scale, attrs, roi)
        if n_out != x.shape[axis] or not np.array_equal(matrix, np.eye(n_out)):
            y = _along(y, axis, matrix)
        view = [1] * x.ndim
        view[axis] = n_out
        inside_all = inside_all & inside.reshape(view)
    if not inside_all.all():
        outside = (~inside_all).astype(y.dtype) * node.attr("extrapolation_value", 0.0)
        y = y + constant(outside)
    if dtypes.is_float(x.dtype):
        return y
    return cast(round_half_even(y), x.dtype)
