"""Public elementwise functions: gc.exp, gc.add, gc.where, ... with numpy's broadcasting.

Operands are promoted to a common dtype first (see dtypes.promote); functions defined
only on floats (exp, log, divide, ...) take integer operands as float32, like numpy's
true division.
"""
from __future__ import annotations

import numpy as np

from graphc import dtypes
from graphc.builder import apply, as_tensor, as_tensors, cast, constant, refuse_bool
from graphc.ir import Tensor


def _promoted(*values, to_float: bool = False) -> list[Tensor]:
    tensors = as_tensors(*values)
    common = dtypes.promote(*[t.dtype for t in tensors])
    if to_float and not dtypes.is_float(common):
        common = dtypes.DEFAULT_FLOAT
    return [cast(t, common) for t in tensors]


def _unary(op: str, to_float: bool):
    def function(x) -> Tensor:
        return apply(op, _promoted(x, to_float=to_float))
    function.__name__ = op
    function.__doc__ = f"Elementwise {op}."
    return function


def _binary(op: str, to_float: bool = False):
    def function(a, b) -> Tensor:
        return apply(op, _promoted(a, b, to_float=to_float))
    function.__name__ = op
    function.__doc__ = f"Elementwise {op}, broadcasting a and b."
    return function


negative = _unary("negative", False)
exp = _unary("exp", True)
log = _unary("log", True)
sqrt = _unary("sqrt", True)
abs = _unary("abs", False)          # noqa: A001 - numpy's name
sign = _unary("sign", False)
tanh = _unary("tanh", True)
sigmoid = _unary("sigmoid", True)
relu = _unary("relu", False)
sin = _unary("sin", True)
erf = _unary("erf", True)
cos = _unary("cos", True)
square = _unary("square", False)

add = _binary("add")
subtract = _binary("subtract")
multiply = _binary("multiply")
divide = _binary("divide", to_float=True)
power = _binary("power", to_float=True)
maximum = _binary("maximum")
minimum = _binary("minimum")
equal = _binary("equal")
not_equal = _binary("not_equal")
less = _binary("less")
less_equal = _binary("less_equal")
greater = _binary("greater")
greater_equal = _binary("greater_equal")


def logical_not(x) -> Tensor:
    """Elementwise not of a bool tensor."""
    refuse_bool(x)
    return apply("logical_not", [as_tensor(x, dtypes.bool_)])


def logical_and(a, b) -> Tensor:
    """Elementwise and of bool tensors."""
    return apply("logical_and", as_tensors(a, b))


def logical_or(a, b) -> Tensor:
    """Elementwise or of bool tensors."""
    return apply("logical_or", as_tensors(a, b))


def where(condition, a, b) -> Tensor:
    """`a` where `condition` holds, else `b` (all three broadcast). Scalar branches sit
    beside the condition, so `where(mask, True, False)` is a bool tensor."""
    refuse_bool(condition)
    condition, a, b = as_tensors(condition, a, b)
    common = dtypes.promote(a.dtype, b.dtype)
    return apply("where", [condition, cast(a, common), cast(b, common)])


def clip(x, lo, hi) -> Tensor:
    """min(max(x, lo), hi), as numpy.clip."""
    return apply("clip", _promoted(x, lo, hi))


def zeros_like(x: Tensor, dtype=None) -> Tensor:
    """A constant of zeros with x's shape (broadcast from a scalar, so it costs nothing)."""
    return apply("broadcast_to", [constant(0, dtype or x.dtype)], shape=tuple(x.shape))


def ones_like(x: Tensor, dtype=None) -> Tensor:
    """A constant of ones with x's shape."""
    return apply("broadcast_to", [constant(1, dtype or x.dtype)], shape=tuple(x.shape))


def zeros(shape, dtype=dtypes.float32) -> Tensor:
    """A constant tensor of zeros."""
    return constant(np.zeros(shape, dtypes.as_dtype(dtype)))


def ones(shape, dtype=dtypes.float32) -> Tensor:
    """A constant tensor of ones."""
    return constant(np.ones(shape, dtypes.as_dtype(dtype)))
