"""gc.nn layers (conv, pooling, BatchNormalization, Embedding, SimpleRNN/LSTM/GRU).

Forwards are checked against loop-based numpy references written from Keras's equations
(NCHW images), gradients of inputs and weights by finite differences in float64 (the
layer's weight attributes are swapped for placeholders), and compiled forwards against
gc.interpret on the OpenCL device.
"""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.nn.base import REGISTRY
from graphc.nn.conv import AvgPool2D, Conv2D, MaxPool2D
from graphc.nn.embedding import Embedding
from graphc.nn.normalization import BatchNormalization
from graphc.nn.recurrent import GRU, LSTM, SimpleRNN

RNG = np.random.default_rng(3)


def _randomize(layer, scale: float = 0.5) -> None:
    """Random values in every weight (variances positive), so zero biases hide nothing."""
    for name, variable, _ in layer._weights:
        value = RNG.standard_normal(variable.shape) * scale
        if "variance" in name:
            value = RNG.uniform(0.5, 1.5, variable.shape)
        variable.set_value(value.astype(variable.dtype))


def _forward(layer, x: np.ndarray, training: bool = False, randomize: bool = True):
    """The layer's output on `x` by gc.interpret (built and randomized on first use)."""
    xs = gc.placeholder(x.shape, x.dtype, name="x")
    if not layer.built:
        layer(xs)
        if randomize:
            _randomize(layer)
    out = layer(xs, training=training)
    return gc.interpret([out], {xs: x})[0], {xs: x}


def _values(layer) -> dict[str, np.ndarray]:
    """Every weight's value by name, as float64."""
    return {name: v.get_value().astype(np.float64) for name, v, _ in layer._weights}


# ---- numpy references ----

def _pad(x, pads, value=0.0):
    (top, bottom), (left, right) = pads
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def conv_ref(x, w, b, stride, pads, dilation, groups):
    """Direct loops: out[n, o, i, j] = sum over the group's channels and the kernel window."""
    x = _pad(x, pads)
    n, _, height, width = x.shape
    out_ch, per_group, kh, kw = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    oh, ow = (height - dh * (kh - 1) - 1) // sh + 1, (width - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, out_ch, oh, ow))
    for o in range(out_ch):
        first = (o // (out_ch // groups)) * per_group        # the group's first input channel
        for i in range(oh):
            for j in range(ow):
                window = x[:, first:first + per_group, i * sh:i * sh + dh * (kh - 1) + 1:dh,
                           j * sw:j * sw + dw * (kw - 1) + 1:dw]
                out[:, o, i, j] = (window * w[o]).sum(axis=(1, 2, 3))
    return out + (0 if b is None else b.reshape(1, -1, 1, 1))


def pool_ref(x, size, stride, pad, reduce):
    """`reduce` over each window, padding -inf (max) or 0 (mean, counted)."""
    x = _pad(x, ((pad[0], pad[0]), (pad[1], pad[1])), -np.inf if reduce is np.max else 0.0)
    oh = (x.shape[2] - size[0]) // stride[0] + 1
    ow = (x.shape[3] - size[1]) // stride[1] + 1
    out = np.zeros(x.shape[:2] + (oh, ow))
    for i in range(oh):
        for j in range(ow):
            window = x[:, :, i * stride[0]:i * stride[0] + size[0],
                       j * stride[1]:j * stride[1] + size[1]]
            out[:, :, i, j] = reduce(window, axis=(2, 3))
    return out


def bn_ref(x, v, mean, var, eps):
    """gamma * (x - mean) / sqrt(var + eps) + beta over axis 1."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return ((x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
            * v["gamma"].reshape(shape) + v["beta"].reshape(shape))


def sigmoid(z):
    """1 / (1 + exp(-z))."""
    return 1.0 / (1.0 + np.exp(-z))


def rnn_ref(layer, x, v):
    """Keras's step equations from a zero state, one timestep at a time."""
    batch, time, _ = x.shape
    units = layer.units
    h, c, outputs = np.zeros((batch, units)), np.zeros((batch, units)), []
    for t in range(time):
        if isinstance(layer, SimpleRNN):
            h = np.tanh(x[:, t] @ v["kernel"] + h @ v["recurrent_kernel"] + v["bias"])
        elif isinstance(layer, LSTM):
            z = x[:, t] @ v["kernel"] + h @ v["recurrent_kernel"] + v["bias"]
            i, f, g, o = (z[:, k * units:(k + 1) * units] for k in range(4))
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
        else:
            h = gru_step(x[:, t], h, v, units, layer.reset_after)
        outputs.append(h)
    return np.stack(outputs, axis=1) if layer.return_sequences else h


def gru_step(x_t, h, v, units, reset_after):
    """Keras's GRU step, gates z, r, h; the candidate's reset before or after the matmul."""
    kernel, recurrent = v["kernel"], v["recurrent_kernel"]
    split = lambda m: [m[:, k * units:(k + 1) * units] for k in range(3)]   # noqa: E731
    if reset_after:
        xz, xr, xh = split(x_t @ kernel + v["bias"][0])
        hz, hr, hh = split(h @ recurrent + v["bias"][1])
        z, r = sigmoid(xz + hz), sigmoid(xr + hr)
        candidate = np.tanh(xh + r * hh)
    else:
        xz, xr, xh = split(x_t @ kernel + v["bias"])
        uz, ur, uh = (recurrent[:, k * units:(k + 1) * units] for k in range(3))
        z, r = sigmoid(xz + h @ uz), sigmoid(xr + h @ ur)
        candidate = np.tanh(xh + (r * h) @ uh)
    return z * h + (1 - z) * candidate


# ---- forward against the references ----

CONV_CASES = [dict(filters=3, kernel_size=3),
              dict(filters=4, kernel_size=(2, 3), strides=2, padding="same"),
              dict(filters=2, kernel_size=3, padding="same", dilation_rate=2),
              dict(filters=4, kernel_size=3, strides=(2, 1), padding=1, groups=2,
                   use_bias=False)]


def _conv_pads(layer, hw):
    """TF's 'same' (output ceil(n / s), an odd padding pixel after), else the layer's ints."""
    if layer.padding != "same":
        return [(p, p) for p in ((0, 0) if layer.padding == "valid" else layer.padding)]
    totals = [max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0) for n, k, s, d
              in zip(hw, layer.kernel_size, layer.strides, layer.dilation_rate)]
    return [(t // 2, t - t // 2) for t in totals]


@pytest.mark.parametrize("kwargs", CONV_CASES, ids=str)
def test_conv2d_forward(kwargs):
    layer, x = Conv2D(**kwargs), RNG.standard_normal((2, 4, 7, 6)).astype(np.float32)
    got, _ = _forward(layer, x)
    v = _values(layer)
    assert v["kernel"].shape == (layer.filters, 4 // layer.groups) + layer.kernel_size
    want = conv_ref(x.astype(np.float64), v["kernel"], v.get("bias"), layer.strides,
                    _conv_pads(layer, x.shape[2:]), layer.dilation_rate, layer.groups)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert layer.compute_output_shape(x.shape[1:]) == got.shape[1:]


def test_conv2d_activation_and_keras_fans():
    layer = Conv2D(8, 3, activation="relu", kernel_initializer="glorot_uniform")
    got, _ = _forward(layer, RNG.standard_normal((1, 6, 5, 5)).astype(np.float32),
                      randomize=False)
    assert got.min() == 0.0
    kernel = layer.kernel.get_value()
    limit = np.sqrt(6.0 / ((6 + 8) * 9))            # fan_in = 6*3*3, fan_out = 8*3*3
    assert 0.9 * limit < np.abs(kernel).max() <= limit
    assert not layer.bias.get_value().any()


@pytest.mark.parametrize("cls, reduce", [(MaxPool2D, np.max), (AvgPool2D, np.mean)])
@pytest.mark.parametrize("kwargs", [{}, dict(pool_size=3, strides=2, padding=1),
                                    dict(pool_size=(2, 3), strides=1, padding="valid")],
                         ids=str)
def test_pooling_forward(cls, reduce, kwargs):
    layer, x = cls(**kwargs), RNG.standard_normal((2, 3, 7, 6)).astype(np.float32)
    got, _ = _forward(layer, x)
    want = pool_ref(x.astype(np.float64), layer.pool_size, layer.strides, layer.padding, reduce)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert layer.weights == [] and layer.compute_output_shape(x.shape[1:]) == got.shape[1:]


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 2, 5)])
def test_batch_norm_training_and_inference(shape):
    layer = BatchNormalization(momentum=0.9, epsilon=1e-3)
    x = (RNG.standard_normal(shape) * 2 + 1).astype(np.float32)
    got, feeds = _forward(layer, x, training=True)
    v = _values(layer)
    xd, axes = x.astype(np.float64), tuple(a for a in range(len(shape)) if a != 1)
    mean, var = xd.mean(axis=axes), xd.var(axis=axes)           # biased, as Keras
    np.testing.assert_allclose(got, bn_ref(xd, v, mean, var, 1e-3), rtol=1e-4, atol=1e-4)
    updates = layer.pop_updates()
    assert [u[0] for u in updates] == [layer.moving_mean, layer.moving_variance]
    new = gc.interpret([u[1] for u in updates], feeds)
    np.testing.assert_allclose(new[0], v["moving_mean"] * 0.9 + mean * 0.1, rtol=1e-5)
    np.testing.assert_allclose(new[1], v["moving_variance"] * 0.9 + var * 0.1, rtol=1e-5)
    got, _ = _forward(layer, x, training=False)
    want = bn_ref(xd, v, v["moving_mean"], v["moving_variance"], 1e-3)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert layer.pop_updates() == []                            # inference updates nothing


def test_batch_norm_without_center_and_scale():
    layer = BatchNormalization(center=False, scale=False, epsilon=0.0)
    got, _ = _forward(layer, RNG.standard_normal((8, 2)).astype(np.float32), training=True)
    assert len(layer.weights) == 2 and layer.trainable_weights == []
    np.testing.assert_allclose([got.mean(0), got.std(0)], [[0, 0], [1, 1]], atol=1e-4)


def test_embedding_forward():
    layer, ids = Embedding(7, 3), RNG.integers(0, 7, (4, 5)).astype(np.int32)
    np.testing.assert_array_equal(_forward(layer, ids)[0], layer.embeddings.get_value()[ids])
    assert layer.compute_output_shape((5,)) == (5, 3)


RNN_LAYERS = {"rnn": lambda: SimpleRNN(3), "rnn_seq": lambda: SimpleRNN(3, return_sequences=True),
              "lstm": lambda: LSTM(3), "lstm_seq": lambda: LSTM(2, return_sequences=True),
              "gru": lambda: GRU(3), "gru_seq": lambda: GRU(3, return_sequences=True),
              "gru_v2_seq": lambda: GRU(2, reset_after=False, return_sequences=True)}


@pytest.mark.parametrize("make", RNN_LAYERS.values(), ids=RNN_LAYERS)
def test_recurrent_forward(make):
    layer, x = make(), RNG.standard_normal((2, 4, 3)).astype(np.float32)
    got, _ = _forward(layer, x)
    want = rnn_ref(layer, x.astype(np.float64), _values(layer))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert layer.compute_output_shape(x.shape[1:]) == got.shape[1:]


def test_recurrent_initial_weights_follow_keras():
    lstm, gru = LSTM(3), GRU(3)
    lstm.build((2, 4)), gru.build((2, 4))
    np.testing.assert_array_equal(lstm.bias.get_value(), [0] * 3 + [1] * 3 + [0] * 6)
    recurrent = lstm.recurrent_kernel.get_value()                  # orthogonal, (3, 12)
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(3), atol=1e-5)
    assert gru.bias.shape == (2, 9) and gru.kernel.shape == (4, 9)


# ---- gradients (float64, inputs and every weight) ----

def _gradcheck(layer, x: np.ndarray, training: bool = False, wrt_input: bool = True):
    """Worst finite-difference error over the input (if float) and each weight."""
    _forward(layer, x, training)
    layer.pop_updates()
    names = [name for name, _, _ in layer._weights if "moving" not in name]
    saved = {name: getattr(layer, name) for name in names}
    values = [saved[name].get_value() for name in names]

    def fn(*tensors):
        x_t, weights = (tensors[0], tensors[1:]) if wrt_input else (gc.constant(x), tensors)
        for name, tensor in zip(names, weights):
            setattr(layer, name, tensor)
        out = layer(x_t, training=training)
        gc.grad(gc.sum(out), list(tensors))       # raises if a weight is not used
        return out

    try:
        return gc.gradcheck(fn, ([x] if wrt_input else []) + values)
    finally:
        for name, tensor in saved.items():
            setattr(layer, name, tensor)


F64 = {"dtype": "float64"}
GRAD_CASES = {
    "conv_same": (lambda: Conv2D(2, 3, strides=2, padding="same", **F64), (1, 2, 5, 4), False),
    "conv_groups": (lambda: Conv2D(2, 2, dilation_rate=2, groups=2, **F64), (1, 2, 4, 4), False),
    "maxpool": (lambda: MaxPool2D(2, padding=1), (1, 2, 4, 3), False),
    "avgpool": (lambda: AvgPool2D(3, 2, 1), (1, 2, 5, 4), False),
    "bn_infer": (lambda: BatchNormalization(**F64), (4, 3), False),
    "bn_train": (lambda: BatchNormalization(**F64), (5, 2), True),
    "bn_train_4d": (lambda: BatchNormalization(**F64), (3, 2, 2, 2), True),
    "rnn": (lambda: SimpleRNN(2, return_sequences=True, **F64), (2, 3, 2), False),
    "lstm": (lambda: LSTM(2, **F64), (2, 3, 2), False),
    "gru": (lambda: GRU(2, return_sequences=True, **F64), (2, 3, 2), False),
    "gru_v2": (lambda: GRU(2, reset_after=False, **F64), (2, 3, 2), False)}


@pytest.mark.parametrize("make, shape, training", GRAD_CASES.values(), ids=GRAD_CASES)
def test_gradients(make, shape, training):
    error, where = _gradcheck(make(), RNG.standard_normal(shape), training)
    assert error < 1e-6, where


def test_embedding_gradient():
    ids = np.array([[0, 3, 3], [4, 0, 1]], np.int32)              # repeated ids accumulate
    error, where = _gradcheck(Embedding(5, 2, **F64), ids, wrt_input=False)
    assert error < 1e-7, where


# ---- training vs inference, configs ----

def test_dropout_training_and_inference():
    core = pytest.importorskip("graphc.nn.core")
    layer = core.Dropout(0.5)
    x = np.ones((50, 40), np.float32)
    assert np.array_equal(_forward(layer, x, training=False)[0], x)
    got = _forward(layer, x, training=True)[0]
    assert set(np.unique(got)) <= {0.0, 2.0} and 0.3 < (got == 0).mean() < 0.7


ALL_LAYERS = [lambda: Conv2D(2, 3, padding="same"), lambda: MaxPool2D(), lambda: AvgPool2D(3),
              lambda: BatchNormalization(), lambda: Embedding(4, 2), *RNN_LAYERS.values()]


@pytest.mark.parametrize("make", ALL_LAYERS)
def test_config_round_trip(make):
    layer = make()
    config = layer.get_config()
    assert REGISTRY[type(layer).__name__] is type(layer)
    clone = type(layer).from_config(config)
    assert clone.get_config() == config


# ---- compiled forwards on the device ----

DEVICE_CASES = {
    "conv": (lambda: Conv2D(3, 3, strides=2, padding="same", activation="relu"), (2, 2, 6, 5),
             False),
    "maxpool": (lambda: MaxPool2D(3, 2, 1), (2, 2, 6, 5), False),
    "avgpool": (lambda: AvgPool2D(2), (2, 2, 6, 5), False),
    "bn_infer": (BatchNormalization, (3, 2, 4, 4), False),
    "bn_train": (BatchNormalization, (3, 2, 4, 4), True),
    "embedding": (lambda: Embedding(6, 3), (2, 5), False),
    **{name: (make, (2, 4, 3), False) for name, make in RNN_LAYERS.items()}}


def _built(layer, shape):
    """The layer built on a placeholder `xs` and randomized, and a batch `x` for it."""
    x = RNG.integers(0, 6, shape).astype(np.int32) if isinstance(layer, Embedding) \
        else RNG.standard_normal(shape).astype(np.float32)
    xs = gc.placeholder(shape, x.dtype, name="x")
    layer(xs)
    _randomize(layer)
    return xs, x


@pytest.mark.opencl
@pytest.mark.parametrize("make, shape, training", DEVICE_CASES.values(), ids=DEVICE_CASES)
def test_compiled_forward_equals_interpreter(cl_device, make, shape, training):
    layer = make()
    xs, x = _built(layer, shape)
    out = layer(xs, training=training)
    updates = layer.pop_updates()
    want = gc.interpret([out] + [u[1] for u in updates], {xs: x})
    got = gc.function([xs], [out], updates=updates, device=cl_device)(x)[0]
    np.testing.assert_allclose(got, want[0], rtol=1e-5, atol=1e-5)
    for (variable, _), new in zip(updates, want[1:]):
        np.testing.assert_allclose(variable.get_value(), new, rtol=1e-5, atol=1e-6)


BACKWARD_CASES = {"conv": (lambda: Conv2D(2, 3, strides=2, padding="same", groups=2),
                           (2, 2, 5, 4)),
                  "maxpool": (lambda: MaxPool2D(3, 2, 1), (2, 2, 5, 4)),
                  "avgpool": (lambda: AvgPool2D(2), (2, 2, 4, 4)),
                  "bn_train": (BatchNormalization, (3, 2, 3, 3)),
                  "embedding": (lambda: Embedding(6, 3), (2, 5)),
                  "rnn": (lambda: SimpleRNN(3, return_sequences=True), (2, 3, 2)),
                  "lstm": (lambda: LSTM(3), (2, 3, 2)),
                  "gru": (lambda: GRU(3, return_sequences=True), (2, 3, 2)),
                  "gru_v2": (lambda: GRU(3, reset_after=False), (2, 3, 2))}


def _training_graph(layer, shape, direction_fed: bool = True):
    """Placeholders, feeds and [loss, grads of the float input and trainable weights]."""
    xs, x = _built(layer, shape)
    out = layer(xs, training=True)
    u = RNG.standard_normal(out.shape).astype(np.float32)
    us = gc.placeholder(out.shape, gc.float32, name="u") if direction_fed else gc.constant(u)
    loss = gc.sum(out * us)
    wrt = ([] if isinstance(layer, Embedding) else [xs]) + layer.trainable_weights
    inputs = [xs, us] if direction_fed else [xs]
    return inputs, [x, u][:len(inputs)], [loss] + gc.grad(loss, wrt)


@pytest.mark.opencl
@pytest.mark.parametrize("make, shape", BACKWARD_CASES.values(), ids=BACKWARD_CASES)
def test_compiled_gradients_equal_interpreter(cl_device, make, shape):
    inputs, feeds, outputs = _training_graph(make(), shape)
    want = gc.interpret(outputs, dict(zip(inputs, feeds)))
    got = gc.function(inputs, outputs, device=cl_device)(*feeds)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


@pytest.mark.opencl
def test_compiled_gradient_of_beta_under_a_constant_direction(cl_device):
    inputs, feeds, outputs = _training_graph(BatchNormalization(), (3, 2), direction_fed=False)
    want = gc.interpret(outputs[-1], dict(zip(inputs, feeds)))
    np.testing.assert_allclose(gc.function(inputs, outputs[-1], device=cl_device)(*feeds), want)
