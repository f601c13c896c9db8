"""Gradients of the issue-17 layers that test_nn_keras_layers.py checks forward only:
RepeatVector, the merges (Multiply, Subtract, Average, Maximum, Minimum), the 1-D poolings
(MaxPooling1D, AveragePooling1D, GlobalMax/AveragePooling1D) and Lambda.

Each runs on gc.interpret in float64 and is compared, forward and backward, with a numpy
transcription of the layer's rule written here (the gradient of sum(g * layer(x)) derived by
hand: copies summed, broadcast axes summed, the max's winner, the mean's share), and with
central finite differences (gc.gradcheck) as a second, rule-free reference.
"""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc import nn

RNG = np.random.default_rng(1719)
FD_TOLERANCE = 1e-6


def _value_and_grads(function, arrays, direction=None):
    """function(placeholders) on the interpreter, and d sum(direction * out) / d inputs."""
    inputs = [gc.placeholder(a.shape, a.dtype, name=f"in{i}") for i, a in enumerate(arrays)]
    out = function(inputs)
    if direction is None:
        direction = RNG.standard_normal(out.shape)
    loss = gc.sum(out * gc.constant(direction))
    got = gc.interpret([out] + gc.grad(loss, inputs), dict(zip(inputs, arrays)))
    return got[0], got[1:], direction


def _unbroadcast(grad: np.ndarray, shape) -> np.ndarray:
    """Sum `grad` over the axes numpy broadcast an array of `shape` along."""
    axes = tuple(i for i, (n, m) in enumerate(zip(shape, grad.shape)) if n == 1 and m != 1)
    return grad.sum(axis=axes, keepdims=True).reshape(shape)


def _check(function, arrays, forward_ref, grads_ref):
    """Forward and every input's gradient against numpy, then against finite differences."""
    got, grads, g = _value_and_grads(function, arrays)
    np.testing.assert_allclose(got, forward_ref(*arrays), rtol=1e-12, atol=1e-12)
    want = grads_ref(g, *arrays)
    assert len(grads) == len(want)
    for index, (grad, expected) in enumerate(zip(grads, want)):
        assert grad.shape == arrays[index].shape, f"input {index}"
        np.testing.assert_allclose(grad, expected, rtol=1e-12, atol=1e-12,
                                   err_msg=f"gradient of input {index}")
    error, where = gc.gradcheck(lambda *xs: function(list(xs)), arrays)
    assert error < FD_TOLERANCE, f"finite differences differ by {error:.2e} at {where}"


# ---- RepeatVector ----

def test_repeat_vector_gradient_sums_the_copies():
    x = RNG.standard_normal((3, 4))
    _check(lambda xs: nn.RepeatVector(5)(xs[0]), [x],
           lambda x: np.repeat(x[:, None], 5, axis=1),
           lambda g, x: [g.sum(axis=1)])


# ---- merges (numpy broadcasting among the inputs) ----

def _winner_grads(g, arrays, pick):
    """The max's (min's) gradient: g to the input that gives the output, broadcast axes summed."""
    full = np.broadcast_arrays(*arrays)
    best = pick(np.stack(full), axis=0)
    return [_unbroadcast(g * (f == best), a.shape) for f, a in zip(full, arrays)]


def _product_grads(g, arrays):
    full = np.broadcast_arrays(*arrays)
    return [_unbroadcast(g * np.prod([f for j, f in enumerate(full) if j != i], axis=0),
                         a.shape) for i, a in enumerate(arrays)]


MERGES = {
    "multiply": (nn.Multiply, lambda *xs: xs[0] * xs[1] * xs[2],
                 lambda g, *xs: _product_grads(g, xs)),
    "average": (nn.Average, lambda *xs: (xs[0] + xs[1] + xs[2]) / 3,
                lambda g, *xs: [_unbroadcast(g / 3, x.shape) for x in xs]),
    "maximum": (nn.Maximum, lambda *xs: np.maximum(np.maximum(xs[0], xs[1]), xs[2]),
                lambda g, *xs: _winner_grads(g, xs, np.max)),
    "minimum": (nn.Minimum, lambda *xs: np.minimum(np.minimum(xs[0], xs[1]), xs[2]),
                lambda g, *xs: _winner_grads(g, xs, np.min)),
    "subtract": (nn.Subtract, lambda a, b: a - b,
                 lambda g, a, b: [_unbroadcast(g, a.shape), _unbroadcast(-g, b.shape)]),
}
SHAPES = {"same": ((3, 4), (3, 4), (3, 4)), "broadcast": ((3, 4), (1, 4), (3, 1))}


@pytest.mark.parametrize("shapes", SHAPES.values(), ids=SHAPES)
@pytest.mark.parametrize("make, forward, grads", MERGES.values(), ids=MERGES)
def test_merge_gradients_match_numpy(make, forward, grads, shapes):
    count = 2 if make is nn.Subtract else 3
    arrays = [RNG.standard_normal(s) for s in shapes[:count]]
    _check(lambda xs: make()(xs), arrays, forward, grads)


@pytest.mark.parametrize("make", [nn.Maximum, nn.Minimum])
def test_maximum_of_equal_inputs_passes_the_gradient_once(make):
    """max(t, t, t) = t: whatever way ties are split, the shares add up to the upstream
    gradient (the derivative along (1, 1, 1)), never to twice or three times it."""
    x = RNG.standard_normal((2, 5))
    _, grads, g = _value_and_grads(lambda xs: make()(xs), [x, x.copy(), x.copy()])
    np.testing.assert_allclose(sum(grads), g, rtol=1e-12)
    assert all(np.all(grad * g >= 0) for grad in grads)         # shares, not signs flipped


# ---- 1-D pooling: (batch, steps, channels) unless channels_first ----

def _windows(steps, size, stride, pads):
    """Each output position's input steps inside the input (pads left out)."""
    before, after = pads
    count = (steps + before + after - size) // stride + 1
    return [[i for i in range(j * stride - before, j * stride - before + size)
             if 0 <= i < steps] for j in range(count)]


def _same_pads(steps, size, stride):
    """Keras 'same': ceil(steps / stride) outputs, the extra padding put after."""
    total = max((-(-steps // stride) - 1) * stride + size - steps, 0)
    return total // 2, total - total // 2


def pool1d_reference(x, size, stride, pads, reduce, divide_by_size):
    """Forward of channels_last 1-D pooling, and its gradient as a function of g."""
    windows = _windows(x.shape[1], size, stride, pads)
    if reduce == "max":
        picks = [[w[k] for k in np.argmax(x[:, w], axis=1).ravel()] for w in windows]
        out = np.stack([x[:, w].max(axis=1) for w in windows], axis=1)
    else:
        shares = [size if divide_by_size else len(w) for w in windows]
        out = np.stack([x[:, w].sum(axis=1) / n for w, n in zip(windows, shares)], axis=1)

    def grad(g):
        dx = np.zeros_like(x)
        batch, _, channels = x.shape
        for j, w in enumerate(windows):
            if reduce == "max":      # picks[j] lists the winner per (example, channel)
                for flat, step in enumerate(picks[j]):
                    b, c = divmod(flat, channels)
                    dx[b, step, c] += g[b, j, c]
            else:
                dx[:, w] += g[:, j:j + 1] / shares[j]
        return dx
    return out, grad


MAX, AVG = nn.MaxPooling1D, nn.AveragePooling1D
POOLS_1D = {
    # name: (layer class, its arguments, pool size, stride, pads, reduce, pads counted)
    "max_valid": (MAX, (2,), 2, 2, (0, 0), "max", False),
    "max_overlapping": (MAX, (3, 1), 3, 1, (0, 0), "max", False),
    "max_same": (MAX, (3, 2, "same"), 3, 2, _same_pads(9, 3, 2), "max", False),
    "max_same_asymmetric": (MAX, (4, 3, "same"), 4, 3, _same_pads(9, 4, 3), "max", False),
    "max_int_padding": (MAX, (3, 2, 1), 3, 2, (1, 1), "max", False),
    "avg_valid": (AVG, (2,), 2, 2, (0, 0), "avg", False),
    "avg_overlapping": (AVG, (3, 1), 3, 1, (0, 0), "avg", False),
    "avg_same": (AVG, (3, 2, "same"), 3, 2, _same_pads(9, 3, 2), "avg", False),
    "avg_same_asymmetric": (AVG, (2, 2, "same"), 2, 2, _same_pads(9, 2, 2), "avg", False),
    "avg_int_padding": (AVG, (3, 2, 1), 3, 2, (1, 1), "avg", True),
}


@pytest.mark.parametrize("channels_first", [False, True], ids=["steps_channels",
                                                               "channels_steps"])
@pytest.mark.parametrize("kind, args, size, stride, pads, reduce, counted",
                         POOLS_1D.values(), ids=POOLS_1D)
def test_pooling_1d_gradients_match_numpy(kind, args, size, stride, pads, reduce, counted,
                                          channels_first):
    x = RNG.standard_normal((2, 9, 3))                          # (batch, steps, channels)
    out, grad = pool1d_reference(x, size, stride, pads, reduce, counted)
    if channels_first:                          # the same numbers, fed as (batch, C, steps)
        swap = lambda v: v.transpose(0, 2, 1)                   # noqa: E731
        _check(lambda xs: kind(*args, data_format="channels_first")(xs[0]), [swap(x)],
               lambda _: swap(out), lambda g, _: [swap(grad(swap(g)))])
    else:
        _check(lambda xs: kind(*args)(xs[0]), [x], lambda _: out, lambda g, _: [grad(g)])


GLOBAL_1D = {
    "global_max": (lambda **kw: nn.GlobalMaxPooling1D(**kw), "max"),
    "global_avg": (lambda **kw: nn.GlobalAveragePooling1D(**kw), "avg"),
}


@pytest.mark.parametrize("keepdims", [False, True], ids=["", "keepdims"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("make, reduce", GLOBAL_1D.values(), ids=GLOBAL_1D)
def test_global_pooling_1d_gradients_match_numpy(make, reduce, data_format, keepdims):
    x = RNG.standard_normal((2, 7, 3))                          # (batch, steps, channels)
    out, grad = pool1d_reference(x, 7, 7, (0, 0), reduce, False)       # one window: all
    first = data_format == "channels_first"
    feed = x.transpose(0, 2, 1) if first else x
    want = out.transpose(0, 2, 1) if first else out             # (batch, 1 or C, C or 1)
    want = want if keepdims else want.reshape(2, 3)

    def grads(g, _):
        g = g.reshape((2, 3, 1) if first else (2, 1, 3))
        dx = grad(g.transpose(0, 2, 1) if first else g)
        return [dx.transpose(0, 2, 1) if first else dx]
    _check(lambda xs: make(data_format=data_format, keepdims=keepdims)(xs[0]), [feed],
           lambda _: want, grads)


# ---- Lambda ----

def _scaled_tanh(x, scale):
    return gc.tanh(x) * scale


@nn.register_function
def _gated(xs):
    return xs[0] * gc.sigmoid(xs[1])


def test_lambda_with_arguments_matches_numpy():
    x = RNG.standard_normal((3, 4))
    _check(lambda xs: nn.Lambda(_scaled_tanh, arguments={"scale": 2.5})(xs[0]), [x],
           lambda x: 2.5 * np.tanh(x), lambda g, x: [g * 2.5 * (1 - np.tanh(x) ** 2)])


def test_lambda_of_several_inputs_matches_numpy():
    a, b = RNG.standard_normal((3, 4)), RNG.standard_normal((3, 4))
    sig = lambda v: 1 / (1 + np.exp(-v))                        # noqa: E731
    _check(lambda xs: nn.Lambda(_gated)(xs), [a, b], lambda a, b: a * sig(b),
           lambda g, a, b: [g * sig(b), g * a * sig(b) * (1 - sig(b))])


def test_lambda_in_a_model_trains_like_numpy():
    """One SGD step of Dense -> Lambda(2.5 tanh) under MSE: the kernel moves by numpy's
    gradient, so the Lambda's backward reaches the weights before it."""
    x = RNG.standard_normal((6, 4)).astype(np.float32)
    y = RNG.standard_normal((6, 3)).astype(np.float32)
    model = nn.Sequential([nn.Input((4,)), nn.Dense(3, use_bias=False, name="dense"),
                           nn.Lambda(_scaled_tanh, arguments={"scale": 2.5})])
    model.compile(gc.optim.SGD(0.1), "mse", device="interpret")
    kernel = RNG.standard_normal((4, 3)).astype(np.float32) * 0.5
    model.get_layer("dense").kernel.set_value(kernel)
    k = kernel.astype(np.float64)
    h = x @ k
    out = 2.5 * np.tanh(h)
    np.testing.assert_allclose(model.predict(x, verbose=0), out, rtol=1e-5)
    loss = model.train_on_batch(x, y)
    loss = loss[0] if isinstance(loss, (list, tuple)) else loss
    np.testing.assert_allclose(loss, np.mean((out - y) ** 2), rtol=1e-5)
    d_out = 2 * (out - y) / out.size
    d_kernel = x.T @ (d_out * 2.5 * (1 - np.tanh(h) ** 2))
    np.testing.assert_allclose(model.get_layer("dense").kernel.get_value(),
                               k - 0.1 * d_kernel, rtol=1e-5, atol=1e-6)
