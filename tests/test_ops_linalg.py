"""matmul and conv2d: the interpreter against independent numpy, bad input, and gradients."""
import inspect
import re

import numpy as np
import pytest

import graphc as gc
from graphc.builder import apply

RNG = np.random.default_rng(0)


def sample(shape, dtype="float64"):
    """Random values of `shape`: small ints for integer dtypes."""
    if np.dtype(dtype).kind == "i":
        return RNG.integers(-4, 5, size=shape).astype(dtype)
    return RNG.standard_normal(shape).astype(dtype)


def assert_error_names_op_and_line(excinfo, op, line):
    text = str(excinfo.value)
    assert op in text, text
    assert re.search(rf"test_ops_linalg\.py:{line}\b", text), text


# ---- matmul ----

MATMUL_SHAPES = [  # a, b: 1-d, 2-d, batched, broadcast batch dims, size-0 and size-1, primes
    ((3,), (3,)), ((3,), (3, 5)), ((2, 3), (3,)), ((2, 3), (3, 5)), ((1, 1), (1, 1)),
    ((4, 2, 3), (3, 5)), ((2, 3), (4, 3, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((4,), (2, 4, 3)),
    ((2, 3, 4), (4,)), ((0, 3), (3, 5)), ((2, 0), (0, 5)), ((3, 0, 2), (2, 4)),
    ((7, 11), (11, 13)), ((1, 3, 1), (3, 1, 1)), ((5,), (1, 5, 1)),
]


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
def test_matmul_matches_numpy(shapes, dtype):
    a, b = (gc.placeholder(s, dtype) for s in shapes)
    va, vb = sample(shapes[0], dtype), sample(shapes[1], dtype)
    y = gc.matmul(a, b)
    result = gc.interpret(y, {a: va, b: vb})
    expected = np.matmul(va, vb)
    assert y.shape == expected.shape and result.dtype == np.dtype(dtype)
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)


def test_matmul_operator_promotion_and_constants():
    a = gc.placeholder((2, 3), gc.int32)
    b = gc.placeholder((3, 4), gc.float32)
    va, vb, vc = sample((2, 3), "int32"), sample((3, 4), "float32"), sample((4,), "float32")
    y = a @ b @ vc
    assert y.dtype == gc.float32 and y.shape == (2,)
    np.testing.assert_allclose(gc.interpret(y, {a: va, b: vb}), va @ vb @ vc, rtol=1e-5)
    z = vc[:2] @ a                                  # ndarray @ Tensor defers to __rmatmul__
    assert z.dtype == gc.float32 and z.shape == (3,)
    np.testing.assert_allclose(gc.interpret(z, {a: va}), vc[:2] @ va, rtol=1e-5)


MATMUL_BAD = [  # a shape, b shape, a dtype, b dtype, error class, words in the message
    ((2, 3), (4, 5), "float32", "float32", gc.ShapeError, "contracted"),
    ((3,), (4,), "float32", "float32", gc.ShapeError, "contracted"),
    ((2, 2, 3), (3, 3, 4), "float32", "float32", gc.ShapeError, "broadcast"),
    ((), (3,), "float32", "float32", gc.ShapeError, "0-d"),
    ((3,), (), "float32", "float32", gc.ShapeError, "operand b is 0-d"),
    ((2, 3), (3, 2), "bool", "bool", gc.DTypeError, "bool"),
]


@pytest.mark.parametrize("sa,sb,da,db,error,words", MATMUL_BAD, ids=str)
def test_matmul_bad_input_names_op_and_line(sa, sb, da, db, error, words):
    a, b = gc.placeholder(sa, da), gc.placeholder(sb, db)
    with pytest.raises(error) as excinfo:
        line = inspect.currentframe().f_lineno + 1
        gc.matmul(a, b)
    assert_error_names_op_and_line(excinfo, "matmul", line)
    assert words in str(excinfo.value)


# ---- conv2d ----

def naive_conv2d(x, w, stride, padding, dilation, groups):
    """Direct loops over every output element: ((top, bottom), (left, right)) padding."""
    (pt, pb), (pl, pr) = padding
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    n, _, h, wd = xp.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    ho, wo = (h - dh * (kh - 1) - 1) // sh + 1, (wd - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, o, ho, wo))
    for b in range(n):
        for oc in range(o):
            first = (oc // (o // groups)) * cg
            for i in range(ho):
                for j in range(wo):
                    patch = xp[b, first:first + cg, i * sh:i * sh + dh * (kh - 1) + 1:dh,
                               j * sw:j * sw + dw * (kw - 1) + 1:dw]
                    out[b, oc, i, j] = np.sum(patch * w[oc])
    return out


def as_pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def explicit_padding(padding, kernel, dilation):
    """PyTorch's rule: 'same' puts the odd pixel of padding at the bottom/right."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        totals = [d * (k - 1) for d, k in zip(as_pair(dilation), kernel)]
        return tuple((t // 2, t - t // 2) for t in totals)
    ph, pw = as_pair(padding)
    return (ph, ph), (pw, pw)


CONV_CASES = [  # x shape, w shape, stride, padding, dilation, groups
    ((2, 3, 7, 7), (4, 3, 3, 3), 1, 0, 1, 1),
    ((1, 2, 6, 9), (3, 2, 2, 4), (2, 3), (1, 2), 1, 1),
    ((2, 4, 8, 7), (6, 2, 3, 2), 2, 1, (2, 1), 2),
    ((1, 3, 5, 5), (3, 1, 3, 3), 1, 1, 1, 3),                       # depthwise
    ((1, 3, 5, 6), (6, 1, 2, 3), 1, "same", 1, 3),                  # depthwise multiplier 2
    ((2, 2, 6, 5), (3, 2, 4, 2), 1, "same", (1, 2), 1),             # even kernel: asymmetric
    ((1, 2, 5, 5), (2, 2, 3, 3), 1, "same", 2, 1),
    ((1, 2, 4, 5), (2, 2, 4, 5), 3, "valid", 1, 1),                 # kernel covers the input
    ((3, 1, 1, 1), (2, 1, 1, 1), 1, 0, 1, 1),                        # size-1 everything
    ((0, 2, 5, 5), (2, 2, 3, 3), 1, 1, 1, 1),                        # empty batch
    ((1, 5, 11, 13), (7, 5, 3, 5), (3, 2), (2, 0), (1, 2), 1),       # primes
]


@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", CONV_CASES, ids=str)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_conv2d_matches_naive_loops(xs, ws, stride, padding, dilation, groups, dtype):
    x, w = gc.placeholder(xs, dtype), gc.placeholder(ws, dtype)
    vx, vw = sample(xs, dtype), sample(ws, dtype)
    y = gc.conv2d(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)
    pads = explicit_padding(padding, ws[2:], dilation)
    expected = naive_conv2d(vx, vw, as_pair(stride), pads, as_pair(dilation), groups)
    result = gc.interpret(y, {x: vx, w: vw})
    assert y.shape == expected.shape and result.dtype == np.dtype(dtype)
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5)
    if padding == "same":
        assert y.shape[2:] == xs[2:]


def test_conv2d_bias_and_positional_arguments():
    x, w, b = gc.placeholder((2, 2, 5, 4)), gc.placeholder((3, 2, 3, 3)), gc.placeholder((3,))
    vx, vw, vb = sample((2, 2, 5, 4), "float32"), sample((3, 2, 3, 3), "float32"), sample((3,))
    y = gc.conv2d(x, w, 2, 1, bias=b)
    expected = naive_conv2d(vx, vw, (2, 2), ((1, 1), (1, 1)), (1, 1), 1) + vb[:, None, None]
    np.testing.assert_allclose(gc.interpret(y, {x: vx, w: vw, b: vb}), expected, rtol=1e-5,
                               atol=1e-5)


CONV_BAD = [  # x shape, w shape, keyword args, error class, words in the message
    ((1, 3, 5, 5), (2, 4, 3, 3), {}, gc.ShapeError, "channel mismatch"),
    ((1, 4, 5, 5), (2, 2, 3, 3), {"groups": 3}, gc.ShapeError, "does not divide the 4 input"),
    ((1, 4, 5, 5), (3, 2, 3, 3), {"groups": 2}, gc.ShapeError, "does not divide the 3 output"),
    ((1, 2, 3, 3), (2, 2, 5, 2), {}, gc.ShapeError, "larger than the padded input height"),
    ((1, 2, 4, 4), (2, 2, 2, 3), {"dilation": 2}, gc.ShapeError, "padded input width"),
    ((2, 5, 5), (2, 2, 3, 3), {}, gc.ShapeError, "input must be 4-d"),
    ((1, 2, 5, 5), (2, 2, 3), {}, gc.ShapeError, "weight must be 4-d"),
]


@pytest.mark.parametrize("xs,ws,kwargs,error,words", CONV_BAD, ids=str)
def test_conv2d_bad_input_names_op_and_line(xs, ws, kwargs, error, words):
    x, w = gc.placeholder(xs), gc.placeholder(ws)
    with pytest.raises(error) as excinfo:
        line = inspect.currentframe().f_lineno + 1
        gc.conv2d(x, w, **kwargs)
    assert_error_names_op_and_line(excinfo, "conv2d", line)
    assert words in str(excinfo.value)


@pytest.mark.parametrize("kwargs,words", [
    ({"stride": 2, "padding": "same"}, "stride 1"), ({"padding": "full"}, "padding"),
    ({"stride": 0}, ">= 1"), ({"padding": -1}, "padding"), ({"dilation": (1, 2, 3)}, "pair"),
    ({"bias": np.zeros(3, np.float32)}, "bias"),
])
def test_conv2d_bad_arguments(kwargs, words):
    x, w = gc.placeholder((1, 2, 5, 5)), gc.placeholder((2, 2, 3, 3))
    with pytest.raises(ValueError) as excinfo:
        line = inspect.currentframe().f_lineno + 1
        gc.conv2d(x, w, **kwargs)
    assert_error_names_op_and_line(excinfo, "conv2d", line)
    assert words in str(excinfo.value)


def test_conv2d_int_operands_compute_in_float32():
    x, w = gc.placeholder((1, 1, 3, 3), gc.int32), gc.placeholder((1, 1, 2, 2), gc.int32)
    vx, vw = sample((1, 1, 3, 3), "int32"), sample((1, 1, 2, 2), "int32")
    y = gc.conv2d(x, w)
    assert y.dtype == gc.float32
    expected = naive_conv2d(vx, vw, (1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    np.testing.assert_allclose(gc.interpret(y, {x: vx, w: vw}), expected)


# ---- gradients (float64 finite differences) ----

@pytest.mark.parametrize("shapes", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((4,), (4, 5)),
                                    ((2, 1, 3, 4), (5, 4, 2)), ((4,), (4,)), ((3, 4), (2, 4, 1))],
                         ids=str)
def test_matmul_gradients(shapes):
    error, where = gc.gradcheck(gc.matmul, [sample(s) for s in shapes])
    assert error < 1e-6, where


GRAD_CONV_CASES = [  # x shape, w shape, stride, padding, dilation, groups
    ((2, 2, 5, 4), (3, 2, 3, 2), 1, 0, 1, 1),
    ((1, 4, 7, 6), (4, 2, 2, 3), (2, 1), (1, 2), (2, 1), 2),
    ((1, 2, 6, 5), (4, 1, 3, 3), 2, 1, 1, 2),                     # unused last rows and columns
    ((1, 2, 4, 5), (2, 2, 2, 2), 1, "same", 2, 1),
]


@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", GRAD_CONV_CASES, ids=str)
def test_conv2d_gradients(xs, ws, stride, padding, dilation, groups):
    def fn(x, w):
        return gc.conv2d(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)
    error, where = gc.gradcheck(fn, [sample(xs), sample(ws)])
    assert error < 1e-6, where


def conv_attrs(stride, padding, dilation, groups):
    """The op attributes gc.conv2d normalizes to (explicit ints and pairs)."""
    return {"stride": as_pair(stride), "padding": padding, "dilation": as_pair(dilation),
            "groups": groups}


SECOND_ORDER = [((1, 2, 5, 4), (2, 2, 2, 3), 1, ((1, 1), (0, 0)), 1, 1),
                ((1, 4, 6, 5), (4, 2, 3, 2), 2, ((1, 0), (1, 1)), (1, 2), 2)]


@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", SECOND_ORDER, ids=str)
def test_conv2d_grad_ops_have_their_own_gradients(xs, ws, stride, padding, dilation, groups):
    attrs = conv_attrs(stride, padding, dilation, groups)
    ys = gc.conv2d(gc.placeholder(xs), gc.placeholder(ws), **attrs).shape

    def grad_input(g, w):
        return apply("conv2d_grad_input", [g, w], **attrs, input_shape=xs)

    def grad_weight(x, g):
        return apply("conv2d_grad_weight", [x, g], **attrs, weight_shape=ws)

    for fn, inputs in ((grad_input, (ys, ws)), (grad_weight, (xs, ys))):
        error, where = gc.gradcheck(fn, [sample(s) for s in inputs])
        assert error < 1e-6, (fn.__name__, where)


@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", SECOND_ORDER, ids=str)
def test_conv2d_second_order(xs, ws, stride, padding, dilation, groups):
    attrs = conv_attrs(stride, padding, dilation, groups)
    for which in (0, 1):

        def fn(x, w):
            cost = gc.sum(gc.tanh(gc.conv2d(x, w, **attrs)))
            return gc.grad(cost, [x, w])[which]
        error, where = gc.gradcheck(fn, [sample(xs), sample(ws)])
        assert error < 1e-6, (which, where)


def test_conv2d_gradient_ops_appear_in_the_backward_graph():
    x, w = gc.placeholder((1, 2, 5, 5)), gc.placeholder((3, 2, 3, 3))
    gx, gw = gc.grad(gc.sum(gc.conv2d(x, w, padding=1)), [x, w])
    ops = {node.op for node in gc.Graph.from_outputs([gx, gw]).nodes}
    assert {"conv2d_grad_input", "conv2d_grad_weight"} <= ops
    assert gx.shape == x.shape and gw.shape == w.shape


def test_conv2d_grad_input_rejects_a_cotangent_of_the_wrong_shape():
    g, w = gc.placeholder((1, 3, 4, 4)), gc.placeholder((3, 2, 3, 3))
    with pytest.raises(gc.ShapeError) as excinfo:
        line = inspect.currentframe().f_lineno + 1
        apply("conv2d_grad_input", [g, w], **conv_attrs(1, ((0, 0), (0, 0)), 1, 1),
              input_shape=(1, 2, 5, 5))
    assert_error_names_op_and_line(excinfo, "conv2d_grad_input", line)
    assert "cotangent shape" in str(excinfo.value)
