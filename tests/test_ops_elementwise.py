"""Elementwise ops: the interpreter against independent numpy expressions, and bad input."""
import inspect
import math
import re

import numpy as np
import pytest

import graphc as gc

RNG = np.random.default_rng(0)
SHAPE_PAIRS = [((), ()), ((3,), ()), ((), (4,)), ((2, 3), (3,)), ((2, 1), (1, 5)),
               ((0, 3), (3,)), ((7, 1, 3), (5, 1)), ((1,), (0,)), ((13,), (13,))]


def sample(shape, dtype, domain="any"):
    """Random values of `shape` in the op's domain."""
    if np.dtype(dtype) == np.bool_:
        return RNG.random(shape) < 0.5
    if np.dtype(dtype).kind == "i":
        return RNG.integers(-5, 6, size=shape).astype(dtype)
    values = RNG.uniform(-2, 2, size=shape)
    if domain == "positive":
        values = np.abs(values) + 0.1
    return values.astype(dtype)


UNARY = [  # function, independent numpy expression, domain, dtypes
    (gc.negative, lambda x: -x, "any", ("float32", "float64", "int32", "int64")),
    (gc.exp, np.exp, "any", ("float32", "float64", "float16")),
    (gc.log, np.log, "positive", ("float32", "float64")),
    (gc.sqrt, np.sqrt, "positive", ("float32", "float64")),
    (gc.abs, np.abs, "any", ("float32", "int32", "int64")),
    (gc.sign, np.sign, "any", ("float32", "int32")),
    (gc.tanh, np.tanh, "any", ("float32", "float64")),
    (gc.sigmoid, lambda x: 1 / (1 + np.exp(-x)), "any", ("float32", "float64")),
    (gc.relu, lambda x: x * (x > 0), "any", ("float32", "float64", "int32")),
    (gc.sin, np.sin, "any", ("float32", "float64")),
    (gc.cos, np.cos, "any", ("float32", "float64")),
    (gc.erf, np.vectorize(math.erf, otypes=[float]), "any", ("float32", "float64")),
    (gc.square, lambda x: x * x, "any", ("float32", "int32", "int64")),
    (gc.logical_not, lambda x: ~x, "any", ("bool",)),
]

BINARY = [  # function, numpy expression, domain of b, dtypes
    (gc.add, lambda a, b: a + b, "any", ("float32", "float64", "int32", "int64")),
    (gc.subtract, lambda a, b: a - b, "any", ("float32", "int32")),
    (gc.multiply, lambda a, b: a * b, "any", ("float32", "int64")),
    (gc.divide, lambda a, b: a / b, "positive", ("float32", "float64")),
    (gc.power, lambda a, b: np.abs(a) ** b, "any", ("float32", "float64")),
    (gc.maximum, lambda a, b: np.where(a > b, a, b), "any", ("float32", "int32")),
    (gc.minimum, lambda a, b: np.where(a < b, a, b), "any", ("float32", "int32")),
    (gc.equal, lambda a, b: a == b, "any", ("int32", "float32", "bool")),
    (gc.not_equal, lambda a, b: a != b, "any", ("int32", "bool")),
    (gc.less, lambda a, b: a < b, "any", ("float32", "int32")),
    (gc.less_equal, lambda a, b: a <= b, "any", ("float32", "int64")),
    (gc.greater, lambda a, b: a > b, "any", ("float32", "int32")),
    (gc.greater_equal, lambda a, b: a >= b, "any", ("float64", "int32")),
    (gc.logical_and, lambda a, b: a & b, "any", ("bool",)),
    (gc.logical_or, lambda a, b: a | b, "any", ("bool",)),
]


def tolerance(dtype):
    return {"float16": 1e-3, "float32": 1e-6, "float64": 1e-12}.get(str(dtype), 0)


def check_close(actual, expected, dtype):
    assert actual.shape == np.shape(expected)
    np.testing.assert_allclose(actual, expected, rtol=tolerance(dtype) * 10,
                               atol=tolerance(dtype))


@pytest.mark.parametrize("fn,expr,domain,dts", UNARY, ids=lambda v: getattr(v, "__name__", ""))
@pytest.mark.parametrize("shape", [(), (1,), (0,), (3, 5), (2, 1, 7)])
def test_unary_matches_numpy(fn, expr, domain, dts, shape):
    for dtype in dts:
        x = gc.placeholder(shape, dtype, name="x")
        value = sample(shape, dtype, domain)
        y = fn(x)
        result = gc.interpret(y, {x: value})
        assert result.dtype == y.dtype
        check_close(result, expr(value), dtype)


@pytest.mark.parametrize("fn,expr,domain,dts", BINARY, ids=lambda v: getattr(v, "__name__", ""))
@pytest.mark.parametrize("shapes", SHAPE_PAIRS)
def test_binary_matches_numpy_with_broadcasting(fn, expr, domain, dts, shapes):
    for dtype in dts:
        a, b = (gc.placeholder(s, dtype) for s in shapes)
        va, vb = sample(shapes[0], dtype), sample(shapes[1], dtype, domain)
        if fn is gc.power:
            va = np.abs(va)
        result = gc.interpret(fn(a, b), {a: va, b: vb})
        check_close(result, expr(va, vb), dtype)


def test_where_and_clip_match_numpy():
    c = gc.placeholder((4, 1), gc.bool)
    a = gc.placeholder((3,), gc.float32)
    x = gc.placeholder((2, 5), gc.float64)
    vc, va, vx = sample((4, 1), "bool"), sample((3,), "float32"), sample((2, 5), "float64")
    np.testing.assert_array_equal(gc.interpret(gc.where(c, a, 0.0), {c: vc, a: va}),
                                  np.where(vc, va, np.float32(0)))
    np.testing.assert_allclose(gc.interpret(gc.clip(x, -0.5, 0.5), {x: vx}),
                               np.minimum(np.maximum(vx, -0.5), 0.5))


@pytest.mark.parametrize("src,dst", [("float32", "int32"), ("int32", "float32"),
                                     ("float64", "float16"), ("bool", "float32"),
                                     ("float32", "bool"), ("int64", "int32")])
def test_cast_matches_astype(src, dst):
    x = gc.placeholder((3, 4), src)
    value = sample((3, 4), src) if src == "bool" else sample((3, 4), src) * 3
    np.testing.assert_array_equal(gc.interpret(gc.cast(x, dst), {x: value}), value.astype(dst))


def test_promotion_and_weak_scalars():
    f32, i32 = gc.placeholder((2,), gc.float32), gc.placeholder((2,), gc.int32)
    assert (f32 + 1).dtype == gc.float32 and (f32 * 2.5).dtype == gc.float32
    assert (i32 + 1).dtype == gc.int32 and (i32 * 2.5).dtype == gc.float32
    assert (i32 + f32).dtype == gc.float32 and (i32 / 2).dtype == gc.float32
    assert (f32 + np.ones(2, np.float64)).dtype == gc.float64
    assert (np.ones(2, np.float32) - f32).dtype == gc.float32
    assert (f32 < 0).dtype == gc.bool


def assert_error_names_op_and_line(excinfo, op, line):
    text = str(excinfo.value)
    assert op in text, text
    assert re.search(rf"test_ops_elementwise\.py:{line}\b", text), text


def test_broadcast_mismatch_is_a_shape_error_at_the_users_line():
    a, b = gc.placeholder((2, 3)), gc.placeholder((4,))
    with pytest.raises(gc.ShapeError) as excinfo:
        line = inspect.currentframe().f_lineno + 1
        gc.add(a, b)
    assert_error_names_op_and_line(excinfo, "add", line)
    assert "(2, 3)" in str(excinfo.value) and "(4,)" in str(excinfo.value)


BAD_DTYPE = [  # function, operand dtypes that the op refuses
    (gc.logical_not, ("float32",)), (gc.logical_and, ("int32", "int32")),
    (gc.where, ("float32", "float32", "float32")), (gc.negative, ("bool",)),
    (gc.add, ("bool", "bool")), (gc.relu, ("bool",)), (gc.abs, ("bool",)),
    (gc.square, ("bool",)), (gc.maximum, ("bool", "bool")),
]


@pytest.mark.parametrize("fn,dts", BAD_DTYPE, ids=lambda v: getattr(v, "__name__", ""))
def test_bad_dtype_is_a_dtype_error_at_the_users_line(fn, dts):
    operands = [gc.placeholder((3,), dt) for dt in dts]
    with pytest.raises(gc.DTypeError) as excinfo:
        line = inspect.currentframe().f_lineno + 1
        fn(*operands)
    assert_error_names_op_and_line(excinfo, fn.__name__, line)


@pytest.mark.parametrize("fn", [u[0] for u in UNARY if u[0] is not gc.logical_not] +
                         [b[0] for b in BINARY if b[0] not in (gc.logical_and, gc.logical_or)],
                         ids=lambda f: f.__name__)
def test_float_ops_on_float_operands_with_mismatched_shapes_fail(fn):
    arity = len(inspect.signature(fn).parameters)
    if arity == 1:
        pytest.skip("a unary op cannot have mismatched shapes")
    a, b = gc.placeholder((3, 2)), gc.placeholder((3,))
    with pytest.raises(gc.ShapeError) as excinfo:
        line = inspect.currentframe().f_lineno + 1
        fn(a, b)
    assert_error_names_op_and_line(excinfo, fn.__name__, line)


def test_cast_to_an_unsupported_dtype_is_a_dtype_error():
    with pytest.raises(gc.DTypeError, match="uint8"):
        gc.cast(gc.placeholder((2,)), np.uint8)


def test_symbolic_tensor_has_no_truth_value():
    with pytest.raises(TypeError, match="truth value"):
        bool(gc.placeholder((2,)) > 0)
