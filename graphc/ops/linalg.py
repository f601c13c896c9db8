"""Contractions: matmul (numpy semantics, batched) and conv2d (PyTorch's functional API).

conv2d's gradients are ops of their own (`conv2d_grad_input`, `conv2d_grad_weight`) with
their own vjps, so second-order gradients through a convolution stay convolutions.
"""
from __future__ import annotations

import numpy as np

from graphc import dtypes
from graphc.builder import apply, as_tensor, as_tensors, cast
from graphc.errors import DTypeError, ShapeError
from graphc.ir import Tensor, TensorType
from graphc.ops.registry import OpDef, register
from graphc.ops.conv import conv2d_ref, conv_output_hw, grad_input_ref, grad_weight_ref
from graphc.ops.movement import reshape, transpose
from graphc.ops.reduction import sum as reduce_sum
from graphc.shapes import broadcast_axes, broadcast_shapes
from graphc.sites import user_site

__all__ = ["matmul", "conv2d"]

CONV_ATTRS = ("stride", "padding", "dilation", "groups")


# ---- matmul ----

def _check_matmul_ndim(a: TensorType, b: TensorType) -> None:
    for least, problem in ((1, "matmul needs at least 1-d operands"),
                           (2, "the matmul op takes >= 2-d operands (gc.matmul reshapes 1-d)")):
        for label, t in (("a", a), ("b", b)):
            if t.ndim < least:
                raise ShapeError(f"operand {label} is {t.ndim}-d; {problem}")


def _matmul_infer(types: list[TensorType]) -> TensorType:
    a, b = types
    _check_matmul_ndim(a, b)
    if a.dtype != b.dtype:
        raise DTypeError(f"operands must share one dtype, got {a.dtype.name} and {b.dtype.name}")
    if dtypes.is_bool(a.dtype):
        raise DTypeError("expects numeric operands, got bool")
    if a.shape[-1] != b.shape[-2]:
        raise ShapeError(f"contracted dimensions differ: a has {a.shape[-1]} columns,"
                         f" b has {b.shape[-2]} rows")
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return TensorType(batch + (a.shape[-2], b.shape[-1]), a.dtype)


def _matrix_transpose(x: Tensor) -> Tensor:
    perm = tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2)
    return transpose(x, perm)


def sum_batch_to(x: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum the broadcast batch dims of a matmul cotangent back to an operand's `shape`."""
    axes = broadcast_axes(shape, x.shape)
    if not axes:
        return x
    return reshape(reduce_sum(x, axis=axes, keepdims=True), shape)


def _matmul_vjp(g: Tensor, y: Tensor, a: Tensor, b: Tensor) -> list[Tensor]:
    grad_a = apply("matmul", [g, _matrix_transpose(b)])
    grad_b = apply("matmul", [_matrix_transpose(a), g])
    return [sum_batch_to(grad_a, a.shape), sum_batch_to(grad_b, b.shape)]


register(OpDef("matmul", "contraction", 2, (), _matmul_infer, np.matmul, _matmul_vjp,
               {}, "Batched matrix product of >= 2-d operands; batch dims broadcast."))


def matmul(a, b) -> Tensor:
    """numpy's matmul: batched and broadcasting; a 1-d operand is a row (a) or column (b)."""
    a, b = as_tensors(a, b)
    common = dtypes.promote(a.dtype, b.dtype)
    a, b = cast(a, common), cast(b, common)
    if a.ndim == 0 or b.ndim == 0:
        return apply("matmul", [a, b])          # the shape rule reports the 0-d operand
    lhs = reshape(a, (1,) + a.shape) if a.ndim == 1 else a
    rhs = reshape(b, b.shape + (1,)) if b.ndim == 1 else b
    out = apply("matmul", [lhs, rhs])
    if a.ndim > 1 and b.ndim > 1:
        return out
    keep = out.shape[:-2] + out.shape[-2:-1] * (a.ndim > 1) + out.shape[-1:] * (b.ndim > 1)
    return reshape(out, keep)


# ---- conv2d and its two gradients ----

def _conv_dtype(x: TensorType, w: TensorType) -> np.dtype:
    if x.dtype != w.dtype:
        raise DTypeError(f"input and weight must share one dtype, got {x.dtype.name}"
                         f" and {w.dtype.name}")
    if not dtypes.is_float(x.dtype):
        raise DTypeError(f"expects float operands, got {x.dtype.name}")
    return x.dtype


def conv_shape(x_shape, w_shape, stride, padding, dilation, groups) -> tuple[int, ...]:
    """The output shape of conv2d, or ShapeError saying which constraint fails."""
    if len(x_shape) != 4:
        raise ShapeError(f"input must be 4-d (N, C, H, W), got {len(x_shape)}-d")
    if len(w_shape) != 4:
        raise ShapeError(f"weight must be 4-d (O, C/groups, kH, kW), got {len(w_shape)}-d")
    n, c = x_shape[:2]
    o, c_per_group = w_shape[:2]
    if c % groups:
        raise ShapeError(f"groups={groups} does not divide the {c} input channels")
    if o % groups:
        raise ShapeError(f"groups={groups} does not divide the {o} output channels")
    if c_per_group * groups != c:
        raise ShapeError(f"channel mismatch: weight expects {c_per_group * groups} input"
                         f" channels ({c_per_group} per group x {groups} groups), input has {c}")
    hw = conv_output_hw(x_shape[2:], w_shape[2:], stride, padding, dilation)
    return (n, o) + hw


def _conv_infer(types, stride, padding, dilation, groups) -> TensorType:
    x, w = types
    dtype = _conv_dtype(x, w)
    return TensorType(conv_shape(x.shape, w.shape, stride, padding, dilation, groups), dtype)


def _expect_cotangent(g: TensorType, expected: tuple[int, ...]) -> None:
    if g.shape != expected:
        raise ShapeError(f"cotangent shape {g.shape} is not the convolution's output"
                         f" shape {expected}")


def _grad_input_infer(types, stride, padding, dilation, groups, input_shape) -> TensorType:
    g, w = types
    dtype = _conv_dtype(g, w)
    _expect_cotangent(g, conv_shape(input_shape, w.shape, stride, padding, dilation, groups))
    return TensorType(tuple(input_shape), dtype)


def _grad_weight_infer(types, stride, padding, dilation, groups, weight_shape) -> TensorType:
    x, g = types
    dtype = _conv_dtype(x, g)
    _expect_cotangent(g, conv_shape(x.shape, weight_shape, stride, padding, dilation, groups))
    return TensorType(tuple(weight_shape), dtype)


def _conv_attrs(attrs: dict) -> dict:
    return {k: attrs[k] for k in CONV_ATTRS}


def _conv_vjp(g, y, x, w, **attrs):
    grad_x = apply("conv2d_grad_input", [g, w], **attrs, input_shape=x.shape)
    grad_w = apply("conv2d_grad_weight", [x, g], **attrs, weight_shape=w.shape)
    return [grad_x, grad_w]


def _grad_input_vjp(cot, y, g, w, **attrs):
    """y = A_w^T g is bilinear: <cot, y> = <conv(cot, w), g>, so both grads are convolutions."""
    conv = _conv_attrs(attrs)
    grad_g = apply("conv2d", [cot, w], **conv)
    grad_w = apply("conv2d_grad_weight", [cot, g], **conv, weight_shape=w.shape)
    return [grad_g, grad_w]


def _grad_weight_vjp(cot, y, x, g, **attrs):
    """y = B_x^T g: <cot, y> = <conv(x, cot), g> = <x, grad_input(g, cot)>."""
    conv = _conv_attrs(attrs)
    grad_x = apply("conv2d_grad_input", [g, cot], **conv, input_shape=x.shape)
    grad_g = apply("conv2d", [x, cot], **conv)
    return [grad_x, grad_g]


register(OpDef("conv2d", "contraction", 2, CONV_ATTRS, _conv_infer, conv2d_ref, _conv_vjp,
               {}, "2-d cross-correlation, NCHW input and OIHW weight."))
register(OpDef("conv2d_grad_input", "contraction", 2, CONV_ATTRS + ("input_shape",),
               _grad_input_infer, grad_input_ref, _grad_input_vjp,
               {},
               "conv2d's gradient by its input (a transposed convolution of g with w)."))
register(OpDef("conv2d_grad_weight", "contraction", 2, CONV_ATTRS + ("weight_shape",),
               _grad_weight_infer, grad_weight_ref, _grad_weight_vjp,
               {},
               "conv2d's gradient by its weight (correlation of x with g)."))


def _pair(value, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
        raise ValueError(f"conv2d: {name} must be an int or a pair of ints, got {value!r}"
                         f"\n  created at {user_site()}")
    return int(pair[0]), int(pair[1])


def _padding(padding, kernel_hw, stride, dilation) -> tuple[tuple[int, int], tuple[int, int]]:
    """((top, bottom), (left, right)) from an int, a pair, a pair of pairs, 'valid' or 'same'."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        if stride != (1, 1):
            raise ValueError("conv2d: padding='same' needs stride 1 (as in PyTorch), got"
                             f" stride={stride}\n  created at {user_site()}")
        totals = [d * (k - 1) for d, k in zip(dilation, kernel_hw)]
        return tuple((t // 2, t - t // 2) for t in totals)
    if isinstance(padding, str):
        raise ValueError(f"conv2d: padding must be an int, a pair, 'valid' or 'same', got"
                         f" {padding!r}\n  created at {user_site()}")
    if np.ndim(padding) == 2 and len(padding) == 2:
        return tuple(_pair(p, "padding") for p in padding)      # explicit, maybe asymmetric
    ph, pw = _pair(padding, "padding")
    return (ph, ph), (pw, pw)


def _check_ranges(stride, pads, dilation, groups) -> None:
    if min(stride + dilation) < 1 or groups < 1 or min(pads[0] + pads[1]) < 0:
        raise ValueError(f"conv2d: stride, dilation and groups must be >= 1 and padding >= 0,"
                         f" got stride={stride} padding={pads} dilation={dilation}"
                         f" groups={groups}\n  created at {user_site()}")


def conv2d(x, w, stride=1, padding=0, dilation=1, groups=1, *, bias=None) -> Tensor:
    """PyTorch's F.conv2d: x (N, C, H, W), w (O, C/groups, kH, kW), optional bias (O,).

    padding: an int, an (h, w) pair, ((top, bottom), (left, right)), 'valid' or 'same'.
    """
    x, w = as_tensors(x, w)
    common = dtypes.promote(x.dtype, w.dtype)
    common = common if dtypes.is_float(common) else dtypes.DEFAULT_FLOAT
    x, w = cast(x, common), cast(w, common)
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    groups = int(groups)
    kernel_hw = (tuple(w.shape[2:4]) + (1, 1))[:2]     # a non-4-d weight fails in the shape rule
    pads = _padding(padding, kernel_hw, stride, dilation)
    _check_ranges(stride, pads, dilation, groups)
    out = apply("conv2d", [x, w], stride=stride, padding=pads, dilation=dilation, groups=groups)
    return out if bias is None else _add_bias(out, bias)


def _add_bias(out: Tensor, bias) -> Tensor:
    bias = as_tensor(bias, out.dtype)
    if bias.shape != out.shape[1:2]:
        raise ShapeError(f"conv2d: bias must have shape ({out.shape[1]},) (one per output"
                         f" channel), got {bias.shape}\n  created at {user_site()}")
    return out + reshape(cast(bias, out.dtype), (1, -1, 1, 1))
