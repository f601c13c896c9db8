"""softmax, log_softmax, max_pool2d, avg_pool2d and one_hot against independent references.

Pooling is checked against explicit Python loops over every output pixel and window
element (small shapes), softmax against the formula 1 / sum_j exp(x_j - x_i), log_softmax
against x - logaddexp.reduce(x), one_hot against rows of an identity matrix. Gradients are
checked by central finite differences in float64, second order included for the pools.
"""
from __future__ import annotations

import inspect
import re

import numpy as np
import pytest

import graphc as gc
from graphc.builder import apply
from graphc.ops import REGISTRY

RNG = np.random.default_rng(7)
HERE = "test_ops_nn.py"
TOL = {"float16": 3e-3, "float32": 2e-6, "float64": 1e-12}


def _run(fn, a: np.ndarray, *args, **kwargs):
    x = gc.placeholder(a.shape, a.dtype)
    out = fn(x, *args, **kwargs)
    got = gc.interpret(out, {x: a})
    assert got.shape == out.shape
    return got


def _assert_close(got, want, dtype) -> None:
    tol = TOL[np.dtype(dtype).name]
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=tol, atol=tol)


# ---- softmax / log_softmax ----

def _softmax_expected(a, axis):
    """softmax_i = 1 / sum_j exp(a_j - a_i): no max subtraction, yet it cannot overflow to nan."""
    a = np.moveaxis(a.astype(np.float64), axis, -1)
    with np.errstate(over="ignore"):
        out = 1.0 / np.exp(a[..., None, :] - a[..., :, None]).sum(-1)
    return np.moveaxis(out, -1, axis)


def _log_softmax_expected(a, axis):
    a = a.astype(np.float64)
    return a - np.logaddexp.reduce(a, axis=axis, keepdims=True)


SOFTMAX_TABLE = {"softmax": (gc.softmax, _softmax_expected),
                 "log_softmax": (gc.log_softmax, _log_softmax_expected)}
SOFTMAX_CASES = [((5,), -1, 1.0), ((3, 7), -1, 1.0), ((3, 7), 0, 1.0), ((2, 3, 5), 1, 1.0),
                 ((4, 1), -1, 1.0), ((1, 4), -2, 1.0), ((2, 0, 3), 2, 1.0), ((2, 3, 0), -1, 1.0),
                 ((3, 5), -1, 1000.0), ((2, 6), 1, 3e4), ((11,), 0, 80.0)]


@pytest.mark.parametrize("shape, axis, scale", SOFTMAX_CASES, ids=str)
@pytest.mark.parametrize("name", sorted(SOFTMAX_TABLE))
def test_softmax_family_matches_formula(name, shape, axis, scale):
    """Large scales (|x| up to 3e4) would overflow exp without the max subtraction."""
    fn, expected = SOFTMAX_TABLE[name]
    a = (RNG.standard_normal(shape) * scale).astype(np.float32)
    got = _run(fn, a, axis=axis)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected(a, axis), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int32", "int64"])
@pytest.mark.parametrize("name", sorted(SOFTMAX_TABLE))
def test_softmax_family_dtypes(name, dtype):
    """Float dtypes are kept; integers become float32, as gc.exp does."""
    fn, expected = SOFTMAX_TABLE[name]
    a = (RNG.standard_normal((3, 4)) * 3).astype(dtype)
    got = _run(fn, a)
    result = np.dtype(dtype) if np.dtype(dtype).kind == "f" else np.dtype(np.float32)
    assert got.dtype == result
    _assert_close(got, expected(a, -1), result)


def test_softmax_family_on_0d_and_rows_summing_to_one():
    a = np.float32(3.5)
    assert _run(gc.softmax, np.array(a)) == 1.0
    assert _run(gc.log_softmax, np.array(a), axis=0) == 0.0
    b = RNG.standard_normal((4, 6)).astype(np.float32) * 50
    np.testing.assert_allclose(_run(gc.softmax, b, axis=0).sum(0), 1.0, rtol=1e-6)


def test_softmax_attrs_are_normalized():
    x = gc.placeholder((2, 3, 5))
    assert gc.softmax(x).producer.attrs == {"axis": 2}
    assert gc.log_softmax(x, axis=-3).producer.attrs == {"axis": 0}
    assert gc.softmax(x).producer.op == "softmax"


# ---- pooling: explicit loops are the reference ----

def _pool_loops(a, kernel, stride, padding, mode, count_include_pad=True):
    """Every output pixel and window element visited one by one."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, h, w = a.shape
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    out = np.zeros((n, c, oh, ow))
    for b, ch, i, j in np.ndindex(n, c, oh, ow):
        inside = [a[b, ch, r, q] for r in range(i * sh - ph, i * sh - ph + kh)
                  for q in range(j * sw - pw, j * sw - pw + kw) if 0 <= r < h and 0 <= q < w]
        if mode == "max":
            out[b, ch, i, j] = max(inside)
        else:
            out[b, ch, i, j] = sum(inside) / (kh * kw if count_include_pad else len(inside))
    return out


def _max_pool_grad_loops(a, g, kernel, stride, padding):
    """g added at the first maximum of each window (row-major), counting padding as -inf."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    out = np.zeros(a.shape)
    for b, ch, i, j in np.ndindex(g.shape):
        best, where = -np.inf, None
        for r in range(i * sh - ph, i * sh - ph + kh):
            for q in range(j * sw - pw, j * sw - pw + kw):
                inside = 0 <= r < a.shape[2] and 0 <= q < a.shape[3]
                if inside and (where is None or a[b, ch, r, q] > best):
                    best, where = a[b, ch, r, q], (r, q)
        out[(b, ch) + where] += g[b, ch, i, j]
    return out


def _as_pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


# (shape NCHW, kernel_size, stride, padding)
POOL_CASES = [((1, 1, 4, 4), 2, None, 0), ((2, 3, 7, 5), 3, 2, 1),
              ((1, 2, 5, 7), (3, 2), (1, 2), (1, 0)), ((2, 1, 6, 6), 2, 1, 1),
              ((1, 1, 3, 3), 3, None, 0), ((1, 2, 5, 5), 1, 2, 0),
              ((1, 1, 2, 9), (2, 4), (1, 3), (1, 2)), ((0, 2, 4, 4), 2, None, 0),
              ((1, 1, 1, 1), 1, None, 0)]


def _geometry(kernel_size, stride, padding):
    kernel = _as_pair(kernel_size)
    return kernel, kernel if stride is None else _as_pair(stride), _as_pair(padding)


@pytest.mark.parametrize("shape, kernel_size, stride, padding", POOL_CASES, ids=str)
def test_max_pool2d_matches_loops(shape, kernel_size, stride, padding):
    a = RNG.standard_normal(shape).astype(np.float32)
    got = _run(gc.max_pool2d, a, kernel_size, stride, padding)
    want = _pool_loops(a, *_geometry(kernel_size, stride, padding), "max")
    np.testing.assert_array_equal(got, want.astype(np.float32))


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("shape, kernel_size, stride, padding", POOL_CASES, ids=str)
def test_avg_pool2d_matches_loops(shape, kernel_size, stride, padding, count_include_pad):
    a = RNG.standard_normal(shape).astype(np.float32)
    got = _run(gc.avg_pool2d, a, kernel_size, stride, padding, count_include_pad)
    want = _pool_loops(a, *_geometry(kernel_size, stride, padding), "avg", count_include_pad)
    _assert_close(got, want, np.float32)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("fn, mode", [(gc.max_pool2d, "max"), (gc.avg_pool2d, "avg")])
def test_pool_dtypes(fn, mode, dtype):
    a = RNG.standard_normal((1, 2, 5, 6)).astype(dtype)
    got = _run(fn, a, 3, 2, 1)
    assert got.dtype == np.dtype(dtype)
    _assert_close(got, _pool_loops(a.astype(np.float64), (3, 3), (2, 2), (1, 1), mode), dtype)


@pytest.mark.parametrize("shape, kernel_size, stride, padding", POOL_CASES[:7], ids=str)
def test_max_pool2d_gradient_routes_to_the_first_maximum(shape, kernel_size, stride, padding):
    """Integer-valued inputs give many ties inside windows; the first one in row-major order
    takes the whole cotangent (as PyTorch's CPU kernel does)."""
    a = RNG.integers(0, 3, shape).astype(np.float64)
    x = gc.placeholder(shape, gc.float64)
    y = gc.max_pool2d(x, kernel_size, stride, padding)
    g = RNG.standard_normal(y.shape)
    got = gc.interpret(gc.grad(gc.sum(y * g), x), {x: a})
    want = _max_pool_grad_loops(a, g, *_geometry(kernel_size, stride, padding))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_max_pool2d_gradient_on_constant_overlapping_windows():
    x = gc.placeholder((1, 1, 3, 3), gc.float64)
    got = gc.interpret(gc.grad(gc.sum(gc.max_pool2d(x, 2, 1)), x), {x: np.ones((1, 1, 3, 3))})
    np.testing.assert_array_equal(got[0, 0], [[1, 1, 0], [1, 1, 0], [0, 0, 0]])


def test_pool_attrs_are_normalized():
    x = gc.placeholder((1, 1, 6, 6))
    node = gc.max_pool2d(x, 3, padding=(1, 0)).producer
    assert (node.op, node.attrs) == ("max_pool2d", {"kernel": (3, 3), "stride": (3, 3),
                                                    "padding": (1, 0)})
    node = gc.avg_pool2d(x, [2, 3], 1, count_include_pad=False).producer
    assert node.attrs == {"kernel": (2, 3), "stride": (1, 1), "padding": (0, 0),
                          "count_include_pad": False}


# ---- one_hot ----

def _one_hot_expected(indices, depth, axis):
    """Rows of eye(depth + 1), the extra row standing for any out-of-range index."""
    valid = (indices >= 0) & (indices < depth)
    rows = np.eye(depth + 1)[np.where(valid, indices, depth)][..., :depth]
    return np.moveaxis(rows, -1, axis)


ONE_HOT_CASES = [((), 4, -1), ((5,), 4, -1), ((5,), 4, 0), ((2, 3), 5, 1), ((2, 3), 5, -3),
                 ((2, 3), 1, -1), ((4,), 0, -1), ((0, 3), 3, -1), ((7,), 3, -2)]


@pytest.mark.parametrize("shape, depth, axis", ONE_HOT_CASES, ids=str)
@pytest.mark.parametrize("index_dtype", ["int32", "int64"])
def test_one_hot_matches_identity_rows(shape, depth, axis, index_dtype):
    """Indices range over [-2, depth + 2): negatives and too-large ones give all-zero rows."""
    indices = RNG.integers(-2, depth + 2, shape).astype(index_dtype)
    got = _run(gc.one_hot, indices, depth, axis=axis)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, _one_hot_expected(indices, depth, axis))


@pytest.mark.parametrize("dtype", ["float64", "int32", "bool", "float16"])
def test_one_hot_dtypes(dtype):
    indices = np.array([0, 2, 1, 3], np.int32)
    got = _run(gc.one_hot, indices, 3, dtype=dtype)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, _one_hot_expected(indices, 3, -1).astype(dtype))


def test_one_hot_of_python_list_and_attrs():
    hot = gc.one_hot([2, 0], 3)
    assert hot.producer.attrs == {"depth": 3, "dtype": np.dtype(np.float32), "axis": 1}
    np.testing.assert_array_equal(gc.interpret(hot), [[0, 0, 1], [1, 0, 0]])


# ---- bad inputs: error class, op name and the line that built the op ----

BAD = [
    (gc.softmax, ((2, 3), "float32"), {"axis": 2}, gc.ShapeError, "softmax", "out of range"),
    (gc.log_softmax, ((2, 3), "float32"), {"axis": -3}, gc.ShapeError, "log_softmax",
     "out of range"),
    (gc.softmax, ((3,), "float32"), {"axis": 0.0}, gc.ShapeError, "softmax", "must be an int"),
    (gc.max_pool2d, ((2, 4, 4), "float32"), {"kernel_size": 2}, gc.ShapeError, "max_pool2d",
     "4-d NCHW"),
    (gc.max_pool2d, ((1, 1, 4, 4), "int32"), {"kernel_size": 2}, gc.DTypeError, "max_pool2d",
     "float"),
    (gc.max_pool2d, ((1, 1, 6, 6), "float32"), {"kernel_size": 3, "padding": 2}, gc.ShapeError,
     "max_pool2d", "at most half"),
    (gc.avg_pool2d, ((1, 1, 2, 6), "float32"), {"kernel_size": 3}, gc.ShapeError, "avg_pool2d",
     "smaller than the kernel"),
    (gc.avg_pool2d, ((1, 1, 4, 4), "float32"), {"kernel_size": (2, 2, 2)}, gc.ShapeError,
     "avg_pool2d", "pair of ints"),
    (gc.avg_pool2d, ((1, 1, 4, 4), "float32"), {"kernel_size": 2, "stride": 0}, gc.ShapeError,
     "avg_pool2d", "positive"),
    (gc.avg_pool2d, ((1, 1, 4, 4), "bool"), {"kernel_size": 2}, gc.DTypeError, "avg_pool2d",
     "float"),
    (gc.one_hot, ((3,), "float32"), {"depth": 4}, gc.DTypeError, "one_hot", "integer indices"),
    (gc.one_hot, ((3,), "int32"), {"depth": -1}, gc.ShapeError, "one_hot", "non-negative"),
    (gc.one_hot, ((3,), "int32"), {"depth": 2.5}, gc.ShapeError, "one_hot", "must be an int"),
    (gc.one_hot, ((3,), "int32"), {"depth": 4, "axis": 2}, gc.ShapeError, "one_hot",
     "out of range"),
]


@pytest.mark.parametrize("fn, operand, kwargs, error, op, problem", BAD,
                         ids=[f"{row[0].__name__}-{row[2]}" for row in BAD])
def test_bad_inputs_raise_at_build_time(fn, operand, kwargs, error, op, problem):
    x = gc.placeholder(*operand)
    line = inspect.currentframe().f_lineno + 2
    with pytest.raises(error) as info:
        fn(x, **kwargs)
    text = str(info.value)
    assert text.startswith(op + "(") and problem in text, text
    assert re.search(rf"created at \S*{HERE}:{line}\b", text), text


def test_backward_ops_check_their_operands():
    x, g = gc.placeholder((1, 1, 4, 4)), gc.placeholder((1, 1, 3, 3))
    geometry = {"kernel": (2, 2), "stride": (2, 2), "padding": (0, 0)}
    with pytest.raises(gc.ShapeError, match=r"max_pool2d_grad\(.*cotangent must be f32\[1,1,2,2\]"):
        apply("max_pool2d_grad", [x, g], **geometry)
    with pytest.raises(gc.ShapeError, match=r"avg_pool2d_grad\(.*cotangent must be"):
        apply("avg_pool2d_grad", [g], **geometry, count_include_pad=True, input_size=(4, 4))


def test_one_hot_is_not_differentiable():
    assert not REGISTRY["one_hot"].differentiable
    i = gc.placeholder((3,), gc.int32)
    with pytest.raises(gc.NonDifferentiableError):
        gc.grad(gc.sum(gc.one_hot(i, 4)), i)


# ---- gradients (float64 central differences) ----

GRAD_CASES = [
    ("softmax", lambda x: gc.softmax(x), (3, 5)),
    ("softmax_axis0", lambda x: gc.softmax(x, axis=0), (4, 3)),
    ("softmax_3d", lambda x: gc.softmax(x, axis=1), (2, 3, 2)),
    ("log_softmax", lambda x: gc.log_softmax(x), (3, 5)),
    ("log_softmax_axis0", lambda x: gc.log_softmax(x, axis=-2), (4, 3)),
    ("max_pool", lambda x: gc.max_pool2d(x, 2), (1, 2, 4, 4)),
    ("max_pool_pad", lambda x: gc.max_pool2d(x, 3, 2, 1), (2, 1, 5, 4)),
    ("max_pool_overlap", lambda x: gc.max_pool2d(x, (2, 3), 1, (1, 0)), (1, 1, 4, 5)),
    ("avg_pool", lambda x: gc.avg_pool2d(x, 2), (1, 2, 4, 4)),
    ("avg_pool_pad", lambda x: gc.avg_pool2d(x, 3, 2, 1), (2, 1, 5, 4)),
    ("avg_pool_no_pad_count", lambda x: gc.avg_pool2d(x, 3, (1, 2), 1, False), (1, 1, 5, 5)),
]


@pytest.mark.parametrize("fn, shape", [row[1:] for row in GRAD_CASES],
                         ids=[row[0] for row in GRAD_CASES])
def test_gradients(fn, shape):
    """Random normal inputs: no ties inside pooling windows, so max pooling is smooth there."""
    error, where = gc.gradcheck(fn, [RNG.standard_normal(shape)])
    assert error < 1e-6, (error, where)


@pytest.mark.parametrize("fn", [gc.softmax, gc.log_softmax])
def test_softmax_family_gradients_at_large_magnitude(fn):
    error, where = gc.gradcheck(lambda x: fn(x, axis=1), [RNG.standard_normal((3, 4)) * 1000])
    assert error < 1e-5, (error, where)


@pytest.mark.parametrize("pool", [gc.max_pool2d, gc.avg_pool2d])
@pytest.mark.parametrize("kernel_size, stride, padding", [(2, None, 0), (3, 2, 1), (2, 1, 1)])
def test_second_order_through_pool_backward_ops(pool, kernel_size, stride, padding):
    """d/dv of grad_x sum(pool(x) * v): differentiates max_pool2d_grad (via max_pool2d_select)
    and avg_pool2d_grad (via avg_pool2d); d/dx of it is zero away from ties."""
    x_value = RNG.standard_normal((1, 2, 5, 5))
    out_shape = pool(gc.placeholder(x_value.shape), kernel_size, stride, padding).shape

    def grad_of_pool(x, v):
        return gc.grad(gc.sum(pool(x, kernel_size, stride, padding) * v), x)

    error, where = gc.gradcheck(grad_of_pool, [x_value, RNG.standard_normal(out_shape)])
    assert error < 1e-6, (error, where)


def test_third_order_max_pool_select_has_a_gradient():
    """max_pool2d_select's own vjp is max_pool2d_grad: differentiate a select once more."""
    x_value, h_value = RNG.standard_normal((1, 1, 4, 4)), RNG.standard_normal((1, 1, 4, 4))

    def select(x, h):
        return apply("max_pool2d_select", [x, h], kernel=(2, 2), stride=(1, 1), padding=(0, 0))

    error, where = gc.gradcheck(select, [x_value, h_value])
    assert error < 1e-6, (error, where)
