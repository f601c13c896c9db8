"""The softmax cross-entropy op pair against an independent numpy formula, on the device
and in the interpreter: forward and gradient, labels and probabilities, float32/float64,
awkward row lengths, another axis; finite-difference gradients; one fused row kernel."""
import numpy as np
import pytest

import graphc as gc

TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


def numpy_cross_entropy(x, labels, weights, axis):
    """Per-row loss and d(sum(weights * loss))/dx, by the textbook formula in float64."""
    x = np.moveaxis(x.astype(np.float64), axis, -1)
    depth = x.shape[-1]
    z = x - x.max(-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    hot = (labels[..., None] == np.arange(depth)).astype(np.float64)
    loss = -(hot * log_p).sum(-1)
    valid = ((labels >= 0) & (labels < depth))[..., None]
    grad = weights[..., None] * (valid * np.exp(log_p) - hot)
    return loss, np.moveaxis(grad, -1, axis)


def run_pair(x, labels, weights, axis, dtype):
    """(loss, dx) from the device, and the kernels it used."""
    X = gc.placeholder(x.shape, dtype, name="x")
    Y = gc.placeholder(labels.shape, labels.dtype, name="y")
    W = gc.placeholder(weights.shape, dtype, name="w")
    loss = gc.softmax_cross_entropy(X, Y, axis=axis)
    (dx,) = gc.grad(gc.sum(loss * W), [X])
    fn = gc.function([X, Y, W], [loss, dx])
    return fn(x.astype(dtype), labels, weights.astype(dtype)), fn


CASES = [  # logits shape, axis
    ((1, 5), -1), ((7, 13), -1), ((4, 1000), 1), ((3, 1), -1), ((11,), 0),
    ((5, 7, 3), 1), ((6, 4), 0),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, axis", CASES)
def test_labels_match_numpy(cl_device, shape, axis, dtype):
    rng = np.random.default_rng(len(shape) + shape[0])
    x = rng.uniform(-6, 6, shape)
    rows = shape[:axis % len(shape)] + shape[axis % len(shape) + 1:]
    labels = rng.integers(0, shape[axis], rows).astype(np.int32)
    weights = rng.uniform(0.5, 2, rows)
    (loss, dx), fn = run_pair(x, labels, weights, axis, dtype)
    want_loss, want_dx = numpy_cross_entropy(x, labels, weights, axis % len(shape))
    np.testing.assert_allclose(loss, want_loss, **TOL[dtype])
    np.testing.assert_allclose(dx, want_dx, **TOL[dtype])
    assert fn.kernel_count == 1, fn.dump()          # loss and gradient in one row kernel


def test_out_of_range_labels_give_zero_loss_and_gradient_on_the_device(cl_device):
    """A device without checking has no error channel: as -sum(one_hot(label) *
    log_softmax), an out-of-range label's row is 0. The interpreter raises instead."""
    x = np.random.default_rng(0).uniform(-3, 3, (5, 4))
    labels = np.array([-1, 4, 100, 2, -7], np.int32)
    (loss, dx), _ = run_pair(x, labels, np.ones(5), -1, np.float32)
    want_loss, want_dx = numpy_cross_entropy(x, labels, np.ones(5), 1)
    assert np.all(loss[[0, 1, 2, 4]] == 0) and np.all(dx[[0, 1, 2, 4]] == 0)
    np.testing.assert_allclose(loss, want_loss, **TOL[np.float32])
    np.testing.assert_allclose(dx, want_dx, **TOL[np.float32])
    with pytest.raises(gc.IndexRangeError, match=r"label -1 at position \(0,\) of labels"):
        gc.interpret([gc.softmax_cross_entropy(gc.constant(x), labels)], {})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_logits_stay_finite(cl_device, dtype):
    """Max subtraction and log-sum-exp: logits of 1e4 neither overflow nor lose the label."""
    x = np.array([[1e4, 0, -1e4], [-1e4, 1e4 - 1, 1e4]])
    labels = np.array([1, 1], np.int32)
    (loss, dx), _ = run_pair(x, labels, np.ones(2), -1, dtype)
    np.testing.assert_allclose(loss, [1e4, 1 + np.log1p(np.exp(-1))], rtol=1e-6)
    assert np.all(np.isfinite(dx))
    np.testing.assert_allclose(dx.sum(axis=1), 0, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_probabilities_match_numpy(cl_device, dtype):
    rng = np.random.default_rng(5)
    x, t = rng.uniform(-4, 4, (6, 17)), rng.uniform(0, 1, (6, 17))
    X, T = gc.placeholder(x.shape, dtype), gc.placeholder(t.shape, dtype)
    loss = gc.losses.categorical_crossentropy(T, X, from_logits=True)
    dx, dt = gc.grad(gc.sum(loss * loss), [X, T])
    fn = gc.function([X, T], [loss, dx, dt])
    got = fn(x.astype(dtype), t.astype(dtype))
    log_p = x - x.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    want_loss = -(t * log_p).sum(1)
    g = 2 * want_loss[:, None]
    want = [want_loss, g * (t.sum(1, keepdims=True) * np.exp(log_p) - t), -g * log_p]
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4 if dtype == np.float32 else 1e-11,
                                   atol=1e-5 if dtype == np.float32 else 1e-12)


def test_mean_loss_and_gradient_take_two_kernels(cl_device):
    """The training-step shape: one row kernel (loss rows + dlogits), one mean."""
    x = gc.placeholder((16, 10), gc.float32)
    y = gc.placeholder((16,), gc.int32)
    loss = gc.mean(gc.losses.sparse_categorical_crossentropy(y, x, from_logits=True))
    fn = gc.function([x, y], [loss, gc.grad(loss, x)])
    assert fn.kernel_count == 2, fn.dump()
    feeds = [np.random.default_rng(1).standard_normal((16, 10)).astype(np.float32),
             np.arange(16, dtype=np.int32) % 10]
    for got, want in zip(fn(*feeds), gc.interpret([loss, gc.grad(loss, x)],
                                                  dict(zip([x, y], feeds)))):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("targets", ["labels", "probabilities"])
def test_gradcheck_first_and_second_order(targets):
    rng = np.random.default_rng(2)
    x, t = rng.standard_normal((3, 5)), rng.uniform(0, 1, (3, 5))
    labels = gc.constant(np.array([0, 4, 2], np.int32))

    def loss(x, t):
        return gc.softmax_cross_entropy(x, labels if targets == "labels" else t, axis=1)

    def slope(x, t):
        return gc.grad(gc.sum(loss(x, t) * loss(x, t)), x)

    for fn in (loss, slope):
        error, where = gc.gradcheck(fn, [x, t])
        assert error < 1e-6, (fn.__name__, where)


def test_shape_and_dtype_errors_name_the_op():
    x = gc.placeholder((4, 3), gc.float32)
    with pytest.raises(gc.ShapeError, match="softmax_cross_entropy.*labels must have shape"):
        gc.softmax_cross_entropy(x, gc.placeholder((3,), gc.int32))
    with pytest.raises(gc.DTypeError, match="float targets must match"):
        gc.softmax_cross_entropy(x, gc.placeholder((4, 4), gc.float32))
    with pytest.raises(gc.ShapeError, match="axis"):
        gc.softmax_cross_entropy(x, gc.placeholder((4,), gc.int32), axis=2)
    with pytest.raises(gc.ShapeError, match="class axis must not be empty"):
        gc.softmax_cross_entropy(gc.placeholder((4, 0)), gc.placeholder((4,), gc.int32))
