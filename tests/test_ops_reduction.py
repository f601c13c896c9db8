"""Reductions (sum mean max min argmax argmin logsumexp) against independent numpy expressions.

Each table row: the public function, the numpy expression it must match, and the dtype the
result must have. Shapes cover 0-d, size-1, size-0 and prime sizes, negative and tuple axes.
Gradients are checked by central finite differences in float64 (gc.gradcheck).
"""
from __future__ import annotations

import inspect
import re
import warnings

import numpy as np
import pytest

import graphc as gc
from graphc.builder import apply
from graphc.ops import REGISTRY

RNG = np.random.default_rng(20240611)
HERE = "test_ops_reduction.py"


def _random(shape, dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return RNG.random(shape) < 0.5
    if dtype.kind == "i":
        return RNG.integers(-4, 5, shape).astype(dtype)        # small range: many ties
    return RNG.standard_normal(shape).astype(dtype)


def _np_axis(a: np.ndarray, axis):
    """numpy refuses axis 0 on a 0-d array; graphc reads it as 'nothing to reduce'."""
    return None if a.ndim == 0 else axis


def _float_result(a: np.ndarray) -> np.dtype:
    return a.dtype if a.dtype.kind == "f" else np.dtype(np.float32)


def _sum_dtype(a: np.ndarray) -> np.dtype:
    return np.dtype(np.int32) if a.dtype == np.bool_ else a.dtype


def _np_logsumexp(a, axis, keepdims):
    return np.logaddexp.reduce(a.astype(np.float64), axis=axis, keepdims=keepdims)


# function, independent numpy expression (a, axis, keepdims), expected result dtype
TABLE = {
    "sum": (gc.sum, lambda a, ax, kd: np.add.reduce(a.astype(np.float64), ax, keepdims=kd),
            _sum_dtype),
    "mean": (gc.mean, lambda a, ax, kd: np.mean(a.astype(np.float64), ax, keepdims=kd),
             _float_result),
    "max": (gc.max, lambda a, ax, kd: np.maximum.reduce(a, ax, keepdims=kd), lambda a: a.dtype),
    "min": (gc.min, lambda a, ax, kd: np.minimum.reduce(a, ax, keepdims=kd), lambda a: a.dtype),
    "logsumexp": (gc.logsumexp, _np_logsumexp, _float_result),
}

# (shape, axis, keepdims): every reduction in TABLE runs on each
AXIS_CASES = [
    ((), None, False), ((), 0, False), ((), -1, True), ((1,), None, False),
    ((7,), 0, True), ((1,), -1, False), ((3, 5), 1, False), ((3, 5), -2, True),
    ((2, 3, 5), (0, 2), False), ((2, 3, 5), (-1, 0), True), ((2, 1, 7), None, True),
    ((4, 3), (), False), ((2, 0, 3), 0, False), ((5, 1, 3), 1, False),
    ((2, 3, 5), (0, 1, 2), False),
]
DTYPES = {"sum": ["float16", "float32", "float64", "int32", "int64", "bool"],
          "mean": ["float16", "float32", "float64", "int32", "bool"],
          "max": ["float16", "float32", "float64", "int32", "int64", "bool"],
          "min": ["float32", "float64", "int32", "int64", "bool"],
          "logsumexp": ["float16", "float32", "float64", "int32"]}
TOL = {"float16": 1e-2, "float32": 1e-5, "float64": 1e-12}


def _check(name: str, a: np.ndarray, axis, keepdims: bool) -> None:
    fn, expression, result_dtype = TABLE[name]
    x = gc.placeholder(a.shape, a.dtype)
    out = fn(x, axis=axis, keepdims=keepdims)
    got = gc.interpret(out, {x: a})
    want = np.asarray(expression(a, _np_axis(a, axis), keepdims))
    assert out.shape == want.shape == got.shape
    assert got.dtype == result_dtype(a)
    tol = TOL.get(got.dtype.name, 0)
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=tol, atol=tol)


@pytest.mark.parametrize("shape, axis, keepdims", AXIS_CASES, ids=str)
@pytest.mark.parametrize("name", sorted(TABLE))
def test_reduction_matches_numpy(name, shape, axis, keepdims):
    _check(name, _random(shape, np.float32), axis, keepdims)


@pytest.mark.parametrize("name, dtype", [(n, d) for n in sorted(TABLE) for d in DTYPES[n]])
def test_reduction_dtypes(name, dtype):
    a = _random((3, 4), dtype)
    _check(name, a, 1, False)
    _check(name, a, None, True)


@pytest.mark.parametrize("name", ["sum", "mean"])
@pytest.mark.parametrize("shape, axis", [((0,), None), ((3, 0), 1), ((0, 4), (0, 1))])
def test_sum_and_mean_over_empty_axes(name, shape, axis):
    """sum of nothing is 0 and mean of nothing is nan, as in numpy (which also warns)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _check(name, np.zeros(shape, np.float32), axis, False)


def test_logsumexp_does_not_overflow():
    a = np.array([[1000.0, 1000.0, 999.0], [-1000.0, -1001.0, -1000.5]], np.float32)
    x = gc.placeholder(a.shape, a.dtype)
    got = gc.interpret(gc.logsumexp(x, axis=1), {x: a})
    want = np.logaddexp.reduce(a.astype(np.float64), axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert np.isfinite(got).all()


def test_logsumexp_with_infinite_inputs():
    """-inf entries contribute nothing; an all -inf row is -inf; a +inf entry gives +inf."""
    a = np.array([[0.0, -np.inf], [-np.inf, -np.inf], [np.inf, 1.0]], np.float64)
    x = gc.placeholder(a.shape, a.dtype)
    got = gc.interpret(gc.logsumexp(x, axis=-1), {x: a})
    np.testing.assert_array_equal(got, [0.0, -np.inf, np.inf])


# ---- argmax / argmin ----

ARG_CASES = [((), None, False), ((), 0, True), ((7,), None, False), ((7,), 0, True),
             ((1,), -1, False), ((3, 5), 1, False), ((3, 5), -2, True), ((2, 3, 5), None, True),
             ((2, 3, 5), 2, False), ((0, 3), 1, False), ((3, 0, 2), 0, True)]


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64", "bool"])
@pytest.mark.parametrize("shape, axis, keepdims", ARG_CASES, ids=str)
@pytest.mark.parametrize("fn, expression", [(gc.argmax, np.argmax), (gc.argmin, np.argmin)],
                         ids=["argmax", "argmin"])
def test_arg_reductions_match_numpy(fn, expression, shape, axis, keepdims, dtype):
    """int32 indices; ties (frequent with small ints and bools) pick the first, as numpy."""
    a = _random(shape, dtype)
    x = gc.placeholder(a.shape, a.dtype)
    got = gc.interpret(fn(x, axis=axis, keepdims=keepdims), {x: a})
    want = expression(a, axis=_np_axis(a, axis), keepdims=keepdims)
    assert got.dtype == np.int32
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_argmax_ties_pick_the_first():
    a = np.array([[1, 3, 3, 0], [2, 2, 2, 2]], np.float32)
    x = gc.placeholder(a.shape, a.dtype)
    got = gc.interpret([gc.argmax(x, 1), gc.argmin(x, 0), gc.argmax(x)], {x: a})
    np.testing.assert_array_equal(got[0], [1, 0])
    np.testing.assert_array_equal(got[1], [0, 1, 1, 0])
    assert got[2] == 1


def test_ir_attrs_are_normalized():
    x = gc.placeholder((2, 3, 5))
    assert gc.sum(x, axis=(-1, 0)).producer.attrs == {"axes": (0, 2), "keepdims": False}
    assert gc.max(x, axis=np.int64(-2), keepdims=1).producer.attrs == {"axes": (1,),
                                                                       "keepdims": True}
    assert gc.argmax(x, axis=-1).producer.attrs == {"axis": 2, "keepdims": False}
    assert gc.sum(gc.placeholder((3,), gc.bool)).dtype == np.int32
    assert gc.mean(gc.placeholder((3,), gc.float16)).dtype == np.float16


def test_tensor_methods_reduce():
    a = _random((3, 4), np.float32)
    x = gc.placeholder(a.shape, a.dtype)
    got = gc.interpret([x.sum(0), x.mean(axis=1, keepdims=True), x.max(), x.min(1), x.argmax(1)],
                       {x: a})
    want = [a.sum(0), a.mean(1, keepdims=True), a.max(), a.min(1), a.argmax(1)]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6)


# ---- bad inputs: error class, op name and the line that built the op ----

BAD = [
    (gc.sum, (2, 3), {"axis": 2}, gc.ShapeError, "reduce_sum", "out of range"),
    (gc.sum, (2, 3), {"axis": (0, -2)}, gc.ShapeError, "reduce_sum", "repeated axis"),
    (gc.sum, (2, 3), {"axis": "0"}, gc.ShapeError, "reduce_sum", "integer"),
    (gc.sum, (2, 3), {"axis": (1.0,)}, gc.ShapeError, "reduce_sum", "integer"),
    (gc.argmax, (2, 3), {"axis": 0.5}, gc.ShapeError, "argmax", "integer"),
    (gc.mean, (2, 3), {"axis": -3}, gc.ShapeError, "mean", "out of range"),
    (gc.max, (2, 0), {"axis": 1}, gc.ShapeError, "reduce_max", "empty axis 1"),
    (gc.min, (0, 3), {}, gc.ShapeError, "reduce_min", "empty axis 0"),
    (gc.max, (), {"axis": 1}, gc.ShapeError, "reduce_max", "out of range"),
    (gc.argmax, (0, 3), {}, gc.ShapeError, "argmax", "empty"),
    (gc.argmin, (3, 0), {"axis": 1}, gc.ShapeError, "argmin", "axis 1 of shape"),
    (gc.argmax, (3, 4), {"axis": 2}, gc.ShapeError, "argmax", "out of range"),
    (gc.logsumexp, (3,), {"axis": 1}, gc.ShapeError, "logsumexp", "out of range"),
    (gc.logsumexp, (0,), {}, gc.ShapeError, "reduce_max", "empty axis"),
]


@pytest.mark.parametrize("fn, shape, kwargs, error, op, problem", BAD,
                         ids=[f"{row[0].__name__}-{row[2]}" for row in BAD])
def test_bad_inputs_raise_at_build_time(fn, shape, kwargs, error, op, problem):
    x = gc.placeholder(shape, gc.float32)
    line = inspect.currentframe().f_lineno + 2
    with pytest.raises(error) as info:
        fn(x, **kwargs)
    text = str(info.value)
    assert text.startswith(op + "(") and problem in text
    assert re.search(rf"created at \S*{HERE}:{line}\b", text), text


def test_reduce_sum_op_rejects_bool_and_unsorted_axes():
    flags = gc.placeholder((2, 3), gc.bool)
    with pytest.raises(gc.DTypeError, match=rf"reduce_sum\(bool\[2,3\]\).*cast(.|\n)*{HERE}"):
        apply("reduce_sum", [flags], axes=(0,), keepdims=False)
    with pytest.raises(gc.ShapeError, match="sorted"):
        apply("reduce_max", [gc.placeholder((2, 3))], axes=(1, 0), keepdims=False)


def test_argmax_is_not_differentiable():
    assert not REGISTRY["argmax"].differentiable and not REGISTRY["argmin"].differentiable
    x = gc.placeholder((3,), gc.float32)
    with pytest.raises(gc.DisconnectedError):
        gc.grad(gc.sum(gc.cast(gc.argmax(x), gc.float32)), x)


# ---- gradients (float64 central differences) ----

GRAD_CASES = [
    ("sum", (3, 4), None, False), ("sum", (2, 3, 5), (0, 2), True), ("sum", (), None, False),
    ("mean", (3, 4), 1, False), ("mean", (2, 1, 3), (-1, 0), True),
    ("max", (3, 5), 1, False), ("max", (2, 3, 2), None, True), ("min", (4, 3), 0, True),
    ("logsumexp", (3, 4), 1, False), ("logsumexp", (2, 3, 2), (0, 2), True),
    ("logsumexp", (5,), None, False),
]


@pytest.mark.parametrize("name, shape, axis, keepdims", GRAD_CASES, ids=str)
def test_gradients(name, shape, axis, keepdims):
    fn = TABLE[name][0]
    error, where = gc.gradcheck(lambda x: fn(x, axis=axis, keepdims=keepdims),
                                [RNG.standard_normal(shape)])
    assert error < 1e-6, (error, where)


def test_logsumexp_gradient_is_finite_for_large_inputs():
    a = 1000.0 + RNG.standard_normal((3, 4))
    error, where = gc.gradcheck(lambda x: gc.logsumexp(x, axis=1), [a])
    assert error < 1e-5, (error, where)
    x = gc.placeholder(a.shape, gc.float32)
    g = gc.interpret(gc.grad(gc.sum(gc.logsumexp(x, axis=1)), x), {x: a.astype(np.float32)})
    a = a.astype(np.float32).astype(np.float64)
    softmax = np.exp(a - a.max(1, keepdims=True))
    np.testing.assert_allclose(g, softmax / softmax.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fn", [gc.max, gc.min])
def test_two_way_ties_split_evenly_and_match_finite_differences(fn):
    """At a 2-way tie the central difference is 1/2 per tied element: the even split we use."""
    a = np.array([[1.0, 3.0, 3.0], [-2.0, 5.0, -2.0]])
    error, where = gc.gradcheck(lambda x: fn(x, axis=1), [a])
    assert error < 1e-6, (error, where)


def test_three_way_ties_share_the_gradient_in_thirds():
    """Finite differences cannot see a 3-way split (they give 1/2), so check the value itself."""
    a = np.array([[2.0, 2.0, 2.0], [0.0, 1.0, 1.0]])
    x = gc.placeholder(a.shape, gc.float64)
    got = gc.interpret(gc.grad(gc.sum(gc.max(x, axis=1)), x), {x: a})
    np.testing.assert_allclose(got, [[1 / 3, 1 / 3, 1 / 3], [0.0, 0.5, 0.5]])
    got = gc.interpret(gc.grad(gc.max(x), x), {x: a})
    np.testing.assert_allclose(got, [[1 / 3, 1 / 3, 1 / 3], [0.0, 0.0, 0.0]])
