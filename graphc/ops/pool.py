"""2-D pooling on NCHW float input, with PyTorch's functional semantics (ceil_mode=False).

Forward ops `max_pool2d` and `avg_pool2d`, and the backward ops their gradients are built
from: `max_pool2d_grad(x, g)` routes each output cotangent to the maximum of its window
(the first one in row-major window order when several tie, as PyTorch's CPU kernel does),
`max_pool2d_select(x, h)` is its transpose (it reads h at those same positions), and
`avg_pool2d_grad(g)` spreads each cotangent evenly over its window. The backward ops have
vjps of their own, so gradients of gradients work.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from graphc import dtypes
from graphc.builder import apply, as_tensor, op_error_text
from graphc.errors import DTypeError, ShapeError
from graphc.ir import Tensor, TensorType
from graphc.ops.registry import OpDef, register
from graphc.sites import user_site

__all__ = ["max_pool2d", "avg_pool2d"]

Pair = tuple[int, int]


# ---- geometry ----

def _check_geometry(kernel: Pair, stride: Pair, padding: Pair) -> None:
    if min(kernel) < 1 or min(stride) < 1 or min(padding) < 0:
        raise ShapeError(f"kernel and stride must be positive and padding non-negative, got"
                         f" kernel={kernel} stride={stride} padding={padding}")
    if any(2 * p > k for p, k in zip(padding, kernel)):
        raise ShapeError(f"padding should be at most half of the kernel size, got"
                         f" padding={padding} kernel={kernel}")


def pooled_hw(hw: Pair, kernel: Pair, stride: Pair, padding: Pair) -> Pair:
    """Output height and width: floor((H + 2p - k) / s) + 1; ShapeError when below 1."""
    _check_geometry(kernel, stride, padding)
    out = tuple((h + 2 * p - k) // s + 1 for h, k, s, p in zip(hw, kernel, stride, padding))
    if min(out) < 1:
        raise ShapeError(f"the input's spatial size {tuple(hw)} (padded by {padding}) is smaller"
                         f" than the kernel {kernel}: the output would be empty")
    return out


def _check_nchw(x: TensorType, what: str = "input") -> None:
    if x.ndim != 4:
        raise ShapeError(f"expects a 4-d NCHW {what}, got {x.ndim}-d shape {x.shape}")
    if not dtypes.is_float(x.dtype):
        raise DTypeError(f"expects a float {what}, got {x.dtype.name}")


def _pooled_type(x: TensorType, kernel, stride, padding) -> TensorType:
    _check_nchw(x)
    return TensorType(x.shape[:2] + pooled_hw(x.shape[2:], kernel, stride, padding), x.dtype)


def _check_same(a: TensorType, b: TensorType, what: str) -> None:
    if a != b:
        raise ShapeError(f"{what} must be {a}, got {b}")


# ---- numpy references (vectorized over pixels) ----

def _padded(x: np.ndarray, padding: Pair, fill: float) -> np.ndarray:
    (ph, pw) = padding
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)


def _windows(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, fill: float):
    """View (N, C, OH, OW, kh, kw) of the padded input's windows."""
    views = sliding_window_view(_padded(x, padding, fill), kernel, axis=(2, 3))
    return views[:, :, ::stride[0], ::stride[1]]


def _divisor(hw: Pair, kernel: Pair, stride: Pair, padding: Pair, count_include_pad: bool):
    """Per-output-position divisor of avg_pool2d: the window size, or its unpadded part."""
    if count_include_pad:
        return float(kernel[0] * kernel[1])
    ones = np.ones((1, 1) + tuple(hw))
    return _windows(ones, kernel, stride, padding, 0.0).sum(axis=(4, 5))[0, 0]


def _max_pool_ref(x, kernel, stride, padding):
    return _windows(x, kernel, stride, padding, -np.inf).max(axis=(4, 5))


def _avg_pool_ref(x, kernel, stride, padding, count_include_pad):
    sums = _windows(x, kernel, stride, padding, 0.0).sum(axis=(4, 5), dtype=np.float64)
    return sums / _divisor(x.shape[2:], kernel, stride, padding, count_include_pad)


def _argmax_index(x, kernel, stride, padding) -> tuple[np.ndarray, ...]:
    """Index arrays (n, c, row, col) into the padded input of each window's first maximum."""
    windows = _windows(x, kernel, stride, padding, -np.inf)
    first = windows.reshape(windows.shape[:4] + (kernel[0] * kernel[1],)).argmax(axis=-1)
    n, c, oh, ow = np.indices(first.shape, sparse=True)
    return n, c, oh * stride[0] + first // kernel[1], ow * stride[1] + first % kernel[1]


def _crop(padded: np.ndarray, padding: Pair) -> np.ndarray:
    (ph, pw), (hp, wp) = padding, padded.shape[2:]
    return padded[:, :, ph:hp - ph, pw:wp - pw]


def _max_grad_ref(x, g, kernel, stride, padding):
    out = np.zeros(_padded(x, padding, 0.0).shape, np.float64)
    np.add.at(out, _argmax_index(x, kernel, stride, padding), g)
    return _crop(out, padding)


def _max_select_ref(x, h, kernel, stride, padding):
    return _padded(h, padding, 0.0)[_argmax_index(x, kernel, stride, padding)]


def _avg_grad_ref(g, kernel, stride, padding, count_include_pad, input_size):
    share = g / _divisor(input_size, kernel, stride, padding, count_include_pad)
    (ph, pw), (oh, ow) = padding, g.shape[2:]
    out = np.zeros(g.shape[:2] + (input_size[0] + 2 * ph, input_size[1] + 2 * pw), np.float64)
    for i in range(kernel[0]):             # a loop over window offsets, not over pixels
        for j in range(kernel[1]):
            out[:, :, i:i + stride[0] * oh:stride[0], j:j + stride[1] * ow:stride[1]] += share
    return _crop(out, padding)


# ---- shape rules ----

def _max_pool_infer(types, kernel, stride, padding):
    (x,) = types
    return _pooled_type(x, kernel, stride, padding)


def _avg_pool_infer(types, kernel, stride, padding, count_include_pad):
    return _max_pool_infer(types, kernel, stride, padding)


def _max_grad_infer(types, kernel, stride, padding):
    x, g = types
    _check_same(_pooled_type(x, kernel, stride, padding), g, "the cotangent")
    return x


def _max_select_infer(types, kernel, stride, padding):
    x, h = types
    _check_same(x, h, "the gathered tensor")
    return _pooled_type(x, kernel, stride, padding)


def _avg_grad_infer(types, kernel, stride, padding, count_include_pad, input_size):
    (g,) = types
    _check_nchw(g, "cotangent")
    x = TensorType(g.shape[:2] + tuple(input_size), g.dtype)
    _check_same(_pooled_type(x, kernel, stride, padding), g, "the cotangent")
    return x


# ---- gradient rules ----

def _max_pool_vjp(g, y, x, kernel, stride, padding):
    return [apply("max_pool2d_grad", [x, g], kernel=kernel, stride=stride, padding=padding)]


def _max_grad_vjp(h, y, x, g, kernel, stride, padding):
    """Routing is piecewise constant in x (no gradient); linear in g (the transpose)."""
    return [None, apply("max_pool2d_select", [x, h], kernel=kernel, stride=stride,
                        padding=padding)]


def _max_select_vjp(g, y, x, h, kernel, stride, padding):
    return [None, apply("max_pool2d_grad", [x, g], kernel=kernel, stride=stride,
                        padding=padding)]


def _avg_pool_vjp(g, y, x, kernel, stride, padding, count_include_pad):
    return [apply("avg_pool2d_grad", [g], kernel=kernel, stride=stride, padding=padding,
                  count_include_pad=count_include_pad, input_size=x.shape[2:])]


def _avg_grad_vjp(h, y, g, kernel, stride, padding, count_include_pad, input_size):
    return [apply("avg_pool2d", [h], kernel=kernel, stride=stride, padding=padding,
                  count_include_pad=count_include_pad)]


GEOMETRY = ("kernel", "stride", "padding")
register(OpDef("max_pool2d", "opaque", 1, GEOMETRY, _max_pool_infer, _max_pool_ref,
               _max_pool_vjp, {},
               "Max over each kernel window (padding is -inf); PyTorch's max_pool2d."))
register(OpDef("avg_pool2d", "opaque", 1, GEOMETRY + ("count_include_pad",), _avg_pool_infer,
               _avg_pool_ref, _avg_pool_vjp, {},
               "Mean over each kernel window (padding is 0); PyTorch's avg_pool2d."))
register(OpDef("max_pool2d_grad", "opaque", 2, GEOMETRY, _max_grad_infer, _max_grad_ref,
               _max_grad_vjp, {},
               "Gradient of max_pool2d by x: g added at each window's first maximum."))
register(OpDef("max_pool2d_select", "opaque", 2, GEOMETRY, _max_select_infer,
               _max_select_ref, _max_select_vjp, {},
               "h read at each window's first maximum of x (transpose of max_pool2d_grad)."))
register(OpDef("avg_pool2d_grad", "opaque", 1,
               GEOMETRY + ("count_include_pad", "input_size"), _avg_grad_infer, _avg_grad_ref,
               _avg_grad_vjp, {},
               "Gradient of avg_pool2d: each g spread evenly over its window."))


# ---- public functions ----

def _pair(op: str, x: Tensor, name: str, value) -> Pair:
    """An int or a pair of ints as a pair; ShapeError naming the op otherwise."""
    items = (value, value) if isinstance(value, (int, np.integer)) else value
    if isinstance(items, (tuple, list)) and len(items) == 2 \
            and all(isinstance(v, (int, np.integer)) for v in items):
        return (int(items[0]), int(items[1]))
    problem = f"{name} must be an int or a pair of ints, got {value!r}"
    raise ShapeError(op_error_text(op, [x], {}, user_site(), problem))


def _geometry(op: str, x: Tensor, kernel_size, stride, padding) -> dict:
    kernel = _pair(op, x, "kernel_size", kernel_size)
    stride = kernel if stride is None else _pair(op, x, "stride", stride)
    return {"kernel": kernel, "stride": stride, "padding": _pair(op, x, "padding", padding)}


def max_pool2d(x, kernel_size, stride=None, padding=0) -> Tensor:
    """Max pooling of NCHW `x` (stride defaults to kernel_size; padding at most kernel/2)."""
    x = as_tensor(x)
    return apply("max_pool2d", [x], **_geometry("max_pool2d", x, kernel_size, stride, padding))


def avg_pool2d(x, kernel_size, stride=None, padding=0, count_include_pad: bool = True) -> Tensor:
    """Average pooling of NCHW `x`; count_include_pad=False divides by the unpadded count."""
    x = as_tensor(x)
    geometry = _geometry("avg_pool2d", x, kernel_size, stride, padding)
    return apply("avg_pool2d", [x], **geometry, count_include_pad=bool(count_include_pad))
