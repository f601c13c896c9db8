"""Elementwise ONNX ops: arithmetic, comparisons, logic, math functions and activations.

Functions graphc has no primitive for are composed exactly from the ones it has (Floor
from a truncating cast, Tan from sin and cos, Softplus in its stable form, ...). Integer
Div truncates toward zero and integer Mod follows Python's sign rule, as in ONNX; both
divide in float64, which is exact for int32 operands.
"""
from __future__ import annotations

import math

import numpy as np

import graphc as gc
from graphc import dtypes
from graphc.builder import cast
from graphc.ir import Tensor
from graphc.onnx.registry import NodeView, converter, like

# ---- arithmetic ----

_BINARY = {"Add": gc.add, "Sub": gc.subtract, "Mul": gc.multiply,
           "Equal": gc.equal, "Less": gc.less, "Greater": gc.greater,
           "LessOrEqual": gc.less_equal, "GreaterOrEqual": gc.greater_equal,
           "And": gc.logical_and, "Or": gc.logical_or, "Xor": gc.not_equal}


def _binary(node: NodeView) -> Tensor:
    return _BINARY[node.op_type](node.input(0), node.input(1))


for _op in _BINARY:
    converter(_op)(_binary)


def trunc(x: Tensor) -> Tensor:
    """Round toward zero: a cast to int64 and back where |x| is below the exact-integer
    range of x's dtype (larger values, inf and NaN are integers already, or stay NaN)."""
    if not dtypes.is_float(x.dtype):
        return x
    limit = 2.0 ** (np.finfo(x.dtype).nmant)
    t = cast(cast(x, dtypes.int64), x.dtype)
    return gc.where(gc.abs(x) < limit, t, x)


def floor(x: Tensor) -> Tensor:
    t = trunc(x)
    return t - cast(t > x, x.dtype) if dtypes.is_float(x.dtype) else x


def ceil(x: Tensor) -> Tensor:
    t = trunc(x)
    return t + cast(t < x, x.dtype) if dtypes.is_float(x.dtype) else x


def round_half_even(x: Tensor) -> Tensor:
    if not dtypes.is_float(x.dtype):
        return x
    f = floor(x)
    frac = x - f
    odd = gc.not_equal(f - 2 * floor(f * 0.5), 0)
    up = gc.logical_or(frac > 0.5, gc.logical_and(gc.equal(frac, 0.5), odd))
    return f + cast(up, x.dtype)


@converter("Div")
def _div(node: NodeView) -> Tensor:
    a, b = node.input(0), node.input(1)
    if dtypes.is_float(a.dtype):
        return gc.divide(a, b)
    quotient = gc.divide(cast(a, dtypes.float64), cast(b, dtypes.float64))
    return cast(quotient, a.dtype)                  # the cast truncates toward zero


@converter("Mod", attrs=("fmod",))
def _mod(node: NodeView) -> Tensor:
    a, b = node.input(0), node.input(1)
    wide = a.dtype if dtypes.is_float(a.dtype) else dtypes.float64
    fa, fb = cast(a, wide), cast(b, wide)
    rounder = trunc if node.attr("fmod", 0) else floor
    result = fa - rounder(fa / fb) * fb
    if dtypes.is_float(a.dtype):            # x mod ±inf: x, or the divisor across signs
        finite_by_inf = gc.logical_and(gc.equal(gc.abs(fb), float("inf")),
                                       gc.less(gc.abs(fa), float("inf")))
        same_sign = gc.logical_or(gc.equal(fa < 0, fb < 0), gc.equal(fa, 0))
        keep = same_sign if not node.attr("fmod", 0) else gc.equal(fa, fa)
        result = gc.where(finite_by_inf, gc.where(keep, fa, fb), result)
    return cast(result, a.dtype)


@converter("Pow")
def _pow(node: NodeView) -> Tensor:
    base, exponent = node.input(0), node.input(1)
    if dtypes.is_float(base.dtype):
        return gc.power(base, cast(exponent, base.dtype))
    wide = gc.power(cast(base, dtypes.float64), cast(exponent, dtypes.float64))
    return cast(round_half_even(wide), base.dtype)


def _variadic(fn):
    def convert(node: NodeView) -> Tensor:
        result = node.input(0)
        for x in node.inputs[1:]:
            result = fn(result, x)
        return result
    return convert


converter("Max")(_variadic(gc.maximum))
converter("Min")(_variadic(gc.minimum))
converter("Sum")(_variadic(gc.add))


@converter("Mean")
def _mean(node: NodeView) -> Tensor:
    return _variadic(gc.add)(node) / float(len(node.inputs))


@converter("BitShift", attrs=("direction",))
def _bitshift(node: NodeView) -> Tensor:
    """Shifts as products and floor quotients by powers of two: a left shift wraps at the
    type's width (narrow types are computed widened and wrapped on the host), a right shift
    of a signed value is arithmetic; a shift by a negative amount or by the width or more
    gives -1 (right shift of a negative value) or 0."""
    from graphc.onnx import types
    x, y = node.input(0), node.input(1)
    elem = node.input_type(0)
    width = 8 * (types.numpy_dtype(elem).itemsize if elem in types.NUMPY else x.dtype.itemsize)
    amount = cast(y, dtypes.float64)
    in_range = gc.logical_and(amount >= 0, amount < width)
    scale = gc.power(gc.constant(2.0, dtypes.float64), gc.where(in_range, amount, 0.0))
    if node.attr("direction") == "LEFT":
        wide = cast(x, dtypes.int64) * cast(scale, dtypes.int64)
        return gc.where(in_range, cast(wide, x.dtype), gc.zeros_like(x))
    shifted = cast(floor(cast(x, dtypes.float64) / scale), x.dtype)
    fill = gc.where(x < 0, gc.ones_like(x) * -1, gc.zeros_like(x))
    return gc.where(in_range, shifted, fill)


# ---- unary math ----

_UNARY = {"Abs": gc.abs, "Neg": gc.negative, "Exp": gc.exp, "Log": gc.log, "Sqrt": gc.sqrt,
          "Sin": gc.sin, "Cos": gc.cos, "Tanh": gc.tanh, "Sigmoid": gc.sigmoid,
          "Relu": gc.relu, "Erf": gc.erf, "Sign": gc.sign, "Not": gc.logical_not,
          "Floor": floor, "Ceil": ceil, "Round": round_half_even}


def _unary(node: NodeView) -> Tensor:
    return _UNARY[node.op_type](node.input(0))


for _op in _UNARY:
    converter(_op)(_unary)

_COMPOSED = {
    "Reciprocal": lambda x: 1.0 / x,
    "Tan": lambda x: gc.sin(x) / gc.cos(x),
    "Sinh": lambda x: (gc.exp(x) - gc.exp(-x)) * 0.5,
    "Cosh": lambda x: (gc.exp(x) + gc.exp(-x)) * 0.5,
    "Asinh": lambda x: gc.log(x + gc.sqrt(x * x + 1.0)),
    "Acosh": lambda x: gc.log(x + gc.sqrt(x * x - 1.0)),
    "Atanh": lambda x: 0.5 * gc.log((1.0 + x) / (1.0 - x)),
    "Softsign": lambda x: x / (1.0 + gc.abs(x)),
    "Softplus": lambda x: gc.relu(x) + gc.log(1.0 + gc.exp(-gc.abs(x))),
    "HardSwish": lambda x: x * gc.clip(x / 6.0 + 0.5, 0.0, 1.0),
    "Mish": lambda x: x * gc.tanh(gc.relu(x) + gc.log(1.0 + gc.exp(-gc.abs(x)))),
    "IsNaN": lambda x: gc.not_equal(x, x),
}


def _composed(node: NodeView) -> Tensor:
    return _COMPOSED[node.op_type](node.input(0))


for _op in _COMPOSED:
    converter(_op)(_composed)


@converter("IsInf", attrs=("detect_negative", "detect_positive"))
def _isinf(node: NodeView) -> Tensor:
    x = node.input(0)
    pos = gc.equal(x, float("inf")) if node.attr("detect_positive", 1) else None
    neg = gc.equal(x, float("-inf")) if node.attr("detect_negative", 1) else None
    if pos is not None and neg is not None:
        return gc.logical_or(pos, neg)
    if pos is None and neg is None:
        return gc.not_equal(x, x) & gc.equal(x, x)         # all False, of x's shape
    return pos if pos is not None else neg


# ---- activations with parameters ----

@converter("Elu", attrs=("alpha",))
def _elu(node: NodeView) -> Tensor:
    x, alpha = node.input(0), node.attr("alpha", 1.0)
    return gc.where(x > 0, x, alpha * (gc.exp(gc.minimum(x, 0.0)) - 1.0))


@converter("Celu", attrs=("alpha",))
def _celu(node: NodeView) -> Tensor:
    x, alpha = node.input(0), node.attr("alpha", 1.0)
    return gc.relu(x) + gc.minimum(0.0, alpha * (gc.exp(gc.minimum(x, 0.0) / alpha) - 1.0))


@converter("Selu", attrs=("alpha", "gamma"))
def _selu(node: NodeView) -> Tensor:
    x = node.input(0)
    alpha, gamma = node.attr("alpha", 1.67326319217681884765625), node.attr("gamma", 1.05070102214813232421875)
    return gamma * gc.where(x > 0, x, alpha * (gc.exp(gc.minimum(x, 0.0)) - 1.0))


@converter("LeakyRelu", attrs=("alpha",))
def _leaky_relu(node: NodeView) -> Tensor:
    x = node.input(0)
    return gc.where(x >= 0, x, node.attr("alpha", 0.01) * x)


@converter("PRelu")
def _prelu(node: NodeView) -> Tensor:
    x, slope = node.input(0), node.input(1)
    return gc.where(x >= 0, x, slope * x)


@converter("ThresholdedRelu", attrs=("alpha",))
def _thresholded_relu(node: NodeView) -> Tensor:
    x = node.input(0)
    return gc.where(x > node.attr("alpha", 1.0), x, 0.0)


@converter("HardSigmoid", attrs=("alpha", "beta"))
def _hard_sigmoid(node: NodeView) -> Tensor:
    x = node.input(0)
    return gc.clip(node.attr("alpha", 0.2) * x + node.attr("beta", 0.5), 0.0, 1.0)


@converter("Shrink", attrs=("bias", "lambd"))
def _shrink(node: NodeView) -> Tensor:
    x, bias, lambd = node.input(0), node.attr("bias", 0.0), node.attr("lambd", 0.5)
    return gc.where(x < -lambd, x + like(bias, x),
                    gc.where(x > lambd, x - like(bias, x), like(0, x)))


@converter("Swish", attrs=("alpha",))
def _swish(node: NodeView) -> Tensor:
    x = node.input(0)
    return x * gc.sigmoid(node.attr("alpha", 1.0) * x)


@converter("Gelu", attrs=("approximate",))
def gelu(node: NodeView) -> Tensor:
    x = node.input(0)
    if node.attr("approximate", "none") == "tanh":
        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)
        return 0.5 * x * (1.0 + gc.tanh(inner))
    if node.attr("approximate", "none") != "none":
        raise node.unsupported(f"approximate={node.attr('approximate')!r} (none or tanh)")
    return 0.5 * x * (1.0 + gc.erf(x * (1.0 / math.sqrt(2.0))))


# ---- selection and type ----

@converter("Where")
def _where(node: NodeView) -> Tensor:
    return gc.where(node.input(0), node.input(1), node.input(2))


@converter("Clip", attrs=("min", "max"))
def _clip(node: NodeView) -> Tensor:
    x = node.input(0)
    lo = node.input(1) if node.opset >= 11 else node.attr("min")
    hi = node.input(2) if node.opset >= 11 else node.attr("max")
    if lo is not None:
        x = gc.maximum(x, lo if isinstance(lo, Tensor) else like(lo, x))
    if hi is not None:
        x = gc.minimum(x, hi if isinstance(hi, Tensor) else like(hi, x))
    return x


@converter("Identity")
def _identity(node: NodeView) -> Tensor:
    """The input itself; an Identity of a weight is a weight of its own. torch's exporter
    stores equal initializers once and names the duplicates with Identity nodes (freshly
    initialized LayerNorm biases, say); imported as one shared variable they would stay
    tied through fine-tuning, which the original model never did."""
    x = node.input(0)
    return node.weight_copy(x, node.output_name(0)) if x.role == "variable" else x
