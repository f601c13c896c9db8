"""Elementwise ops: unary math, binary arithmetic, comparisons, where, clip, cast.

Each record's template is an OpenCL C expression over {0}, {1}, {2} (the operands) and
{T} (the C type of the result); "glsl" gives the Vulkan backend's spelling where the OpenCL
one is not valid GLSL (C casts), else the OpenCL one serves both (codegen/glsl.py). vjp rules return cotangents of the broadcast output
shape; autodiff sums them back to each input's shape.
"""
from __future__ import annotations

import math

import numpy as np

import graphc.builder as B
from graphc import dtypes
from graphc.errors import DTypeError
from graphc.ir import TensorType
from graphc.ops.registry import NonDifferentiable, OpDef, register
from graphc.shapes import broadcast_shapes

NOT_DIFF_BOOL = NonDifferentiable("boolean output")
FLOAT_ONLY, NUMERIC, BOOL_ONLY, ANY = "float", "numeric", "bool", "any"


def _check_kind(op_kind: str, dtype: np.dtype) -> None:
    allowed = {FLOAT_ONLY: dtypes.is_float(dtype), BOOL_ONLY: dtypes.is_bool(dtype),
               NUMERIC: not dtypes.is_bool(dtype), ANY: True}[op_kind]
    if not allowed:
        raise DTypeError(f"expects {op_kind} operands, got {dtype.name}")


def _same_dtype(types) -> np.dtype:
    found = {t.dtype for t in types}
    if len(found) > 1:
        names = ", ".join(sorted(d.name for d in found))
        raise DTypeError(f"operands must share one dtype, got {names}")
    return found.pop()


def unary_infer(kind: str, out_dtype=None):
    """Shape rule of a unary op on `kind` operands."""
    def infer(types):
        (x,) = types
        _check_kind(kind, x.dtype)
        return TensorType(x.shape, out_dtype or x.dtype)
    return infer


def nary_infer(kind: str, out_dtype=None):
    """Shape rule of a broadcasting op whose operands share one dtype of `kind`."""
    def infer(types):
        dtype = _same_dtype(types)
        _check_kind(kind, dtype)
        return TensorType(broadcast_shapes(*[t.shape for t in types]), out_dtype or dtype)
    return infer


def _unary(name, kind, ref, vjp, template, doc, out_dtype=None, glsl=None):
    templates = {"opencl": template} if glsl is None else {"opencl": template, "glsl": glsl}
    register(OpDef(name, "elementwise", 1, (), unary_infer(kind, out_dtype), ref, vjp,
                   templates, doc))


def _binary(name, kind, ref, vjp, template, doc, out_dtype=None, commutative=False,
            glsl=None):
    templates = {"opencl": template} if glsl is None else {"opencl": template, "glsl": glsl}
    register(OpDef(name, "elementwise", 2, (), nary_infer(kind, out_dtype), ref, vjp,
                   templates, doc, commutative))


# ---- gradient rules (g: output cotangent, y: output, x/a/b: inputs) ----

def _zero_like(g):
    return B.apply("multiply", [g, B.constant(0, g.dtype)])


def _sign_ref(x):
    return np.sign(x).astype(x.dtype)


def _sigmoid_ref(x):
    with np.errstate(over="ignore"):
        return (1 / (1 + np.exp(-x))).astype(x.dtype)


def _relu_ref(x):
    return np.maximum(x, np.zeros((), x.dtype))


_erf_scalar = np.frompyfunc(math.erf, 1, 1)


def _erf_ref(x):
    """math.erf elementwise (numpy has no erf; math's is correctly rounded in float64)."""
    return np.asarray(_erf_scalar(np.asarray(x, np.float64)), np.float64).astype(x.dtype)


def _erf_vjp(g, y, x):
    """d erf(x) / dx = 2 / sqrt(pi) * exp(-x^2)."""
    return [g * (2.0 / math.sqrt(math.pi)) * B.apply("exp", [-(x * x)])]


def _max_share(a, b):
    """1 where a wins, 0.5 at ties, 0 where b wins: ties split the gradient evenly."""
    from graphc.math import equal, greater
    wins = B.cast(greater(a, b), a.dtype)
    ties = B.cast(equal(a, b), a.dtype)
    return wins + 0.5 * ties


def _pow_vjp(g, y, a, b):
    from graphc.math import log, ones_like, power, where
    safe_log = where(a > 0, log(where(a > 0, a, ones_like(a))), 0.0)
    return [g * b * power(a, b - 1), g * y * safe_log]


def _clip_vjp(g, y, x, lo, hi):
    from graphc.math import logical_and, where
    inside = logical_and(x >= lo, x <= hi)
    return [where(inside, g, 0.0), where(x < lo, g, 0.0), where(x > hi, g, 0.0)]


def _cast_vjp(g, y, x, dtype):
    return [B.cast(g, x.dtype)]


_unary("negative", NUMERIC, np.negative, lambda g, y, x: [-g], "(-{0})", "Elementwise -x.")
_unary("exp", FLOAT_ONLY, np.exp, lambda g, y, x: [g * y], "exp({0})", "e**x.")
_unary("log", FLOAT_ONLY, np.log, lambda g, y, x: [g / x], "log({0})", "Natural log.")
_unary("sqrt", FLOAT_ONLY, np.sqrt, lambda g, y, x: [g / (2 * y)], "sqrt({0})",
       "Square root. Its gradient at 0 is inf (as in numpy's limit), not a clipped value.")
_unary("abs", NUMERIC, np.abs, lambda g, y, x: [g * B.apply("sign", [x])],
       "({0} < 0 ? -{0} : {0})", "|x|; gradient sign(x), 0 at 0.")
_unary("sign", NUMERIC, _sign_ref, lambda g, y, x: [_zero_like(g)],
       "(({T})({0} > 0) - ({T})({0} < 0))", "-1, 0 or 1; gradient 0.",
       glsl="({T}({0} > {T}(0)) - {T}({0} < {T}(0)))")
_unary("tanh", FLOAT_ONLY, np.tanh, lambda g, y, x: [g * (1 - y * y)], "tanh({0})", "tanh.")
_unary("sigmoid", FLOAT_ONLY, _sigmoid_ref, lambda g, y, x: [g * y * (1 - y)],
       "(({T})1 / (({T})1 + exp(-{0})))", "1 / (1 + e**-x).",
       glsl="({T}(1) / ({T}(1) + exp(-{0})))")
_unary("relu", NUMERIC, _relu_ref,
       lambda g, y, x: [g * B.cast(B.apply("greater", [x, B.constant(0, x.dtype)]), g.dtype)],
       "(({0} > ({T})0 || {0} != {0}) ? {0} : ({T})0)",
       "max(x, 0); gradient 0 at 0; NaN stays NaN.",
       glsl="(({0} > {T}(0) || {0} != {0}) ? {0} : {T}(0))")
_unary("erf", FLOAT_ONLY, _erf_ref, _erf_vjp, "graphc_erf_{T}({0})",   # kernels_cl/erf.cl
       "The error function 2/sqrt(pi) * integral of exp(-t^2) from 0 to x (exact GELU).")
_unary("sin", FLOAT_ONLY, np.sin, lambda g, y, x: [g * B.apply("cos", [x])], "sin({0})", "sin.")
_unary("cos", FLOAT_ONLY, np.cos, lambda g, y, x: [-g * B.apply("sin", [x])], "cos({0})", "cos.")
_unary("square", NUMERIC, np.square, lambda g, y, x: [2 * g * x], "({0} * {0})", "x*x.")
_unary("logical_not", BOOL_ONLY, np.logical_not, NOT_DIFF_BOOL, "(!{0})", "not x.")

_binary("add", NUMERIC, np.add, lambda g, y, a, b: [g, g], "({0} + {1})", "a + b.",
        commutative=True)
_binary("subtract", NUMERIC, np.subtract, lambda g, y, a, b: [g, -g], "({0} - {1})", "a - b.")
_binary("multiply", NUMERIC, np.multiply, lambda g, y, a, b: [g * b, g * a], "({0} * {1})",
        "a * b.", commutative=True)
_binary("divide", FLOAT_ONLY, np.divide, lambda g, y, a, b: [g / b, -g * y / b],
        "({0} / {1})", "a / b (true division; integer operands are cast to float32 first).")
_binary("power", FLOAT_ONLY, np.power, _pow_vjp, "pow({0}, {1})",
        "a ** b; the gradient by b is 0 where a <= 0.",
        glsl="graphc_pow({0}, {1})")   # GLSL's pow leaves a < 0 undefined: glsl_renderer.py
_binary("maximum", NUMERIC, np.maximum,
        lambda g, y, a, b: [g * _max_share(a, b), g * _max_share(b, a)],
        "(({0} > {1} || {0} != {0}) ? {0} : {1})",
        "Elementwise max; ties split the gradient evenly.", commutative=True)
_binary("minimum", NUMERIC, np.minimum,
        lambda g, y, a, b: [g * _max_share(b, a), g * _max_share(a, b)],
        "(({0} < {1} || {0} != {0}) ? {0} : {1})",
        "Elementwise min; ties split the gradient evenly.", commutative=True)
for _name, _sym in [("equal", "=="), ("not_equal", "!="), ("less", "<"), ("less_equal", "<="),
                    ("greater", ">"), ("greater_equal", ">=")]:
    _binary(_name, ANY, getattr(np, _name), NOT_DIFF_BOOL, f"({{0}} {_sym} {{1}})",
            f"a {_sym} b, elementwise (bool).", out_dtype=dtypes.bool_,
            commutative=_name in ("equal", "not_equal"))
_binary("logical_and", BOOL_ONLY, np.logical_and, NOT_DIFF_BOOL, "({0} && {1})", "a and b.",
        commutative=True)
_binary("logical_or", BOOL_ONLY, np.logical_or, NOT_DIFF_BOOL, "({0} || {1})", "a or b.",
        commutative=True)


def _where_infer(types):
    cond, a, b = types
    if not dtypes.is_bool(cond.dtype):
        raise DTypeError(f"condition must be bool, got {cond.dtype.name}")
    dtype = _same_dtype([a, b])
    return TensorType(broadcast_shapes(cond.shape, a.shape, b.shape), dtype)


register(OpDef("where", "elementwise", 3, (), _where_infer, np.where,
               lambda g, y, c, a, b: [None, B.apply("where", [c, g, _zero_like(g)]),
                                      B.apply("where", [c, _zero_like(g), g])],
               {"opencl": "({0} ? {1} : {2})"}, "cond ? a : b, elementwise."))
register(OpDef("clip", "elementwise", 3, (), nary_infer(NUMERIC),
               lambda x, lo, hi: np.minimum(np.maximum(x, lo), hi), _clip_vjp,
               {"opencl": "(({0} != {0}) ? {0} : ({0} < {1} ? {1} : ({0} > {2} ? {2} : {0})))"},
               "min(max(x, lo), hi); the gradient flows to whichever operand is chosen."))


def _cast_infer(types, dtype):
    (x,) = types
    return TensorType(x.shape, dtypes.as_dtype(dtype))


def _cast_ref(x, dtype):
    with np.errstate(invalid="ignore"):
        return x.astype(dtype)


register(OpDef("cast", "elementwise", 1, ("dtype",), _cast_infer, _cast_ref, _cast_vjp,
               {"opencl": "(({T}){0})"}, "Convert dtype (float→int truncates toward zero)."))
