"""Layer normalization as one op pair over the last axis: the output and its input gradient.

`layer_norm(x, gamma, beta, epsilon)`: per row of the last axis, y = (x - mean) * r * gamma
+ beta with r = 1 / sqrt(var + epsilon), var the biased variance (Keras's and PyTorch's
LayerNorm). `layer_norm_grad(x, gamma, g, epsilon)`: its gradient by x, r * (h - mean(h) -
xhat * mean(h * xhat)) with h = g * gamma and xhat = (x - mean) * r. Each lowers to one row
kernel (codegen/layer_norm_rows.py) that computes the row's statistics itself, where the
same formulas from reductions and elementwise ops took four kernels forward and five back.
The gradients by gamma and beta are column sums of g * xhat and g, which fuse with the
other column sums of the step.
"""
from __future__ import annotations

import numpy as np

from graphc import dtypes
from graphc.builder import apply, as_tensor, cast
from graphc.errors import DTypeError, ShapeError
from graphc.ir import TensorType
from graphc.math import ones, sqrt, zeros
from graphc.ops.reduction import sum as reduce_sum
from graphc.ops.registry import OpDef, register



def _check(x: TensorType, *per_feature: TensorType) -> None:
    if not dtypes.is_float(x.dtype):
        raise DTypeError(f"expects a float input, got {x.dtype.name}")
    if x.ndim < 1 or x.shape[-1] < 1:
        raise ShapeError(f"expects rows along a non-empty last axis, got shape {x.shape}")
    for t in per_feature:
        if t.shape != x.shape[-1:] or t.dtype != x.dtype:
            raise ShapeError(f"gamma and beta must be {x.dtype.name}[{x.shape[-1]}], got {t}")


def _forward_infer(types, epsilon):
    x, gamma, beta = types
    _check(x, gamma, beta)
    return x


def _grad_infer(types, epsilon):
    x, gamma, g = types
    _check(x, gamma)
    if g != x:
        raise ShapeError(f"g must be {x}, got {g}")
    return x


def _normalized_ref(x: np.ndarray, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """(xhat, r) of each row, in float64."""
    x = x.astype(np.float64)
    centered = x - x.mean(axis=-1, keepdims=True)
    r = 1.0 / np.sqrt((centered * centered).mean(axis=-1, keepdims=True) + epsilon)
    return centered * r, r


def _forward_ref(x, gamma, beta, epsilon):
    xhat, _ = _normalized_ref(x, epsilon)
    return (xhat * gamma + beta).astype(x.dtype)


def _grad_ref(x, gamma, g, epsilon):
    xhat, r = _normalized_ref(x, epsilon)
    h = g.astype(np.float64) * gamma
    out = r * (h - h.mean(axis=-1, keepdims=True)
               - xhat * (h * xhat).mean(axis=-1, keepdims=True))
    return out.astype(x.dtype)


def _row_sum(value):
    """Sum over every axis but the last (the per-feature gradient)."""
    return reduce_sum(value, axis=tuple(range(value.ndim - 1))) if value.ndim > 1 else value


def _normalized(x, epsilon):
    ones_, zeros_ = ones(x.shape[-1:], x.dtype), zeros(x.shape[-1:], x.dtype)
    return apply("layer_norm", [x, ones_, zeros_], epsilon=epsilon)


def _forward_vjp(g, y, x, gamma, beta, epsilon):
    dx = apply("layer_norm_grad", [x, gamma, g], epsilon=epsilon)
    return [dx, _row_sum(g * _normalized(x, epsilon)), _row_sum(g)]


def composite_grad(x, gamma, g, epsilon):
    """layer_norm_grad from reductions and elementwise ops (its own gradient's source)."""
    n = x.shape[-1]
    centered = x - reduce_sum(x, axis=-1, keepdims=True) * (1.0 / n)
    r = 1.0 / sqrt(reduce_sum(centered * centered, axis=-1, keepdims=True) * (1.0 / n)
                   + epsilon)
    xhat, h = centered * r, g * gamma
    mean_h = reduce_sum(h, axis=-1, keepdims=True) * (1.0 / n)
    mean_hx = reduce_sum(h * xhat, axis=-1, keepdims=True) * (1.0 / n)
    return r * (h - mean_h - xhat * mean_hx)


def _grad_vjp(cot, y, x, gamma, g, epsilon):
    """Second order: differentiate the composite form of the gradient."""
    from graphc.autodiff import grad
    return grad(reduce_sum(composite_grad(x, gamma, g, epsilon) * cot), [x, gamma, g])


register(OpDef("layer_norm", "opaque", 3, ("epsilon",), _forward_infer, _forward_ref,
               _forward_vjp, {},
               "(x - mean) / sqrt(var + epsilon) * gamma + beta over the last axis."))
register(OpDef("layer_norm_grad", "opaque", 3, ("epsilon",), _grad_infer, _grad_ref,
               _grad_vjp, {},
               "layer_norm's gradient by x: r * (h - mean(h) - xhat * mean(h * xhat)), "
               "h = g * gamma."))


def layer_norm(x, gamma=None, beta=None, epsilon: float = 1e-3):
    """Normalize each row of the last axis of `x` to mean 0 and variance 1, then scale by
    `gamma` and shift by `beta` (each of the last axis's length; default 1 and 0)."""
    x = as_tensor(x)
    x = x if dtypes.is_float(x.dtype) else cast(x, dtypes.DEFAULT_FLOAT)
    features = x.shape[-1:] if x.ndim else (1,)
    gamma = ones(features, x.dtype) if gamma is None else cast(as_tensor(gamma), x.dtype)
    beta = zeros(features, x.dtype) if beta is None else cast(as_tensor(beta), x.dtype)
    return apply("layer_norm", [x, gamma, beta], epsilon=float(epsilon))
