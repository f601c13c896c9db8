"""Weight and activity regularizers (L1, L2, L1L2), weight constraints (MaxNorm, NonNeg,
UnitNorm, MinMaxNorm), the options every layer takes (kernel_regularizer, ...), and Keras's
Layer.add_weight: penalties and their gradients against numpy, training steps against a
numpy transcription of SGD, padded batches, configs and saved models."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc import nn
from graphc.nn import constraints, regularizers

RNG = np.random.default_rng(11)


# ---- penalties and projections, forward and backward ----

@pytest.mark.parametrize("reg,value,grad", [
    (regularizers.L1(0.3), lambda w: 0.3 * np.abs(w).sum(), lambda w: 0.3 * np.sign(w)),
    (regularizers.L2(0.2), lambda w: 0.2 * (w * w).sum(), lambda w: 0.4 * w),
    (regularizers.L1L2(0.1, 0.5), lambda w: 0.1 * np.abs(w).sum() + 0.5 * (w * w).sum(),
     lambda w: 0.1 * np.sign(w) + w),
    (regularizers.get("l1_l2"), lambda w: 0.01 * np.abs(w).sum() + 0.01 * (w * w).sum(),
     lambda w: 0.01 * np.sign(w) + 0.02 * w),
], ids=["l1", "l2", "l1l2", "l1_l2-by-name"])
def test_regularizer_value_and_gradient(reg, value, grad):
    w = RNG.standard_normal((4, 3))
    t = gc.placeholder(w.shape, gc.float64, name="w")
    penalty = reg(t)
    got, got_grad = gc.interpret([penalty, gc.grad(penalty, t)], {t: w})
    np.testing.assert_allclose(got, value(w), rtol=1e-12)
    np.testing.assert_allclose(got_grad, grad(w), rtol=1e-12)


def _np_norms(w, axis):
    return np.sqrt((w * w).sum(axis=axis, keepdims=True))


@pytest.mark.parametrize("constraint,expected", [
    (constraints.MaxNorm(1.5), lambda w: w * np.clip(_np_norms(w, 0), 0, 1.5)
     / (1e-7 + _np_norms(w, 0))),
    (constraints.MaxNorm(1.0, axis=[0, 1]), lambda w: w * np.clip(_np_norms(w, (0, 1)), 0, 1)
     / (1e-7 + _np_norms(w, (0, 1)))),
    (constraints.NonNeg(), lambda w: w * (w >= 0)),
    (constraints.UnitNorm(axis=1), lambda w: w / (1e-7 + _np_norms(w, 1))),
    (constraints.MinMaxNorm(0.5, 1.2, rate=0.7), lambda w: w * (
        0.7 * np.clip(_np_norms(w, 0), 0.5, 1.2) + 0.3 * _np_norms(w, 0))
     / (1e-7 + _np_norms(w, 0))),
], ids=["max_norm", "max_norm_axes", "non_neg", "unit_norm", "min_max_norm"])
def test_constraint_projection(constraint, expected):
    w = RNG.standard_normal((3, 4, 2)) * 2
    np.testing.assert_allclose(gc.interpret(constraint(gc.constant(w))), expected(w),
                               rtol=1e-12)


# ---- in training ----

def _sgd_model(layer, features=3, lr=0.1, device="interpret"):
    model = nn.Sequential([nn.Input((features,)), layer])
    model.compile(gc.optim.SGD(lr), "mse", device=device)
    return model


def test_kernel_regularizer_enters_loss_and_step():
    x = RNG.standard_normal((6, 3)).astype(np.float32)
    y = RNG.standard_normal((6, 2)).astype(np.float32)
    model = _sgd_model(nn.Dense(2, use_bias=False, kernel_regularizer=regularizers.L2(0.1)))
    w = model.layers[0].get_weights()[0].astype(np.float64)
    err = x @ w - y
    loss = (err ** 2).mean() + 0.1 * (w * w).sum()
    assert model.evaluate(x, y, batch_size=6) == pytest.approx(loss, rel=1e-5)
    history = model.fit(x, y, batch_size=6, epochs=1, verbose=0)
    assert history.history["loss"][0] == pytest.approx(loss, rel=1e-5)
    grad = 2 * x.T @ err / err.size + 0.2 * w
    np.testing.assert_allclose(model.layers[0].get_weights()[0], w - 0.1 * grad, rtol=1e-5,
                               atol=1e-6)


def test_activity_regularizer_ignores_padded_rows():
    x = RNG.standard_normal((5, 3)).astype(np.float32)
    y = RNG.standard_normal((5, 2)).astype(np.float32)
    model = _sgd_model(nn.Dense(2, activity_regularizer=regularizers.L1(0.1)))
    kernel, bias = (w.astype(np.float64) for w in model.layers[0].get_weights())
    out = x @ kernel + bias
    total = 0.0
    for rows in (slice(0, 4), slice(4, 5)):       # batch_size 4: the second batch is padded
        o, n = out[rows], len(out[rows])
        total += n * (((o - y[rows]) ** 2).mean() + 0.1 * np.abs(o).sum() / n)
    assert model.evaluate(x, y, batch_size=4) == pytest.approx(total / 5, rel=1e-5)


def test_constraints_project_after_each_step():
    x = RNG.standard_normal((8, 4)).astype(np.float32)
    y = RNG.standard_normal((8, 3)).astype(np.float32)
    layer = nn.Dense(3, kernel_constraint="non_neg", bias_constraint=constraints.MaxNorm(0.05))
    model = _sgd_model(layer, features=4, lr=0.5)
    kernel, bias = (w.astype(np.float64) for w in layer.get_weights())
    err = x @ kernel + bias - y
    new_kernel = kernel - 0.5 * 2 * x.T @ err / err.size
    new_bias = bias - 0.5 * 2 * err.sum(0) / err.size
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    got_kernel, got_bias = layer.get_weights()
    np.testing.assert_allclose(got_kernel, np.maximum(new_kernel, 0), rtol=1e-5, atol=1e-6)
    norm = np.sqrt((new_bias ** 2).sum())
    np.testing.assert_allclose(got_bias, new_bias * min(norm, 0.05) / (1e-7 + norm),
                               rtol=1e-5, atol=1e-7)


def test_conv_max_norm_counts_axes_in_keras_layout():
    """MaxNorm(axis=[0, 1, 2]) on a Conv2D kernel bounds each filter (Keras's HWIO axes),
    though graphc stores the kernel OIHW."""
    x = RNG.standard_normal((2, 2, 5, 5)).astype(np.float32) * 3
    y = RNG.standard_normal((2, 4, 3, 3)).astype(np.float32)
    conv = nn.Conv2D(4, 3, kernel_constraint=constraints.MaxNorm(0.3, axis=[0, 1, 2]))
    model = nn.Sequential([nn.Input((2, 5, 5)), conv])
    model.compile(gc.optim.SGD(1.0), "mse", device="interpret")
    model.fit(x, y, batch_size=2, epochs=2, verbose=0)
    kernel = conv.get_weights()[0]                              # (filters, in, kh, kw)
    norms = np.sqrt((kernel ** 2).sum(axis=(1, 2, 3)))
    assert norms.max() <= 0.3 + 1e-5 and norms.max() > 0.29


@pytest.mark.opencl
def test_regularized_constrained_training_on_device_matches_interpreter(cl_device):
    x = RNG.standard_normal((10, 4)).astype(np.float32)
    y = RNG.integers(0, 3, 10).astype(np.int32)

    def train(device):
        gc.random.set_seed(5)
        model = nn.Sequential([
            nn.Input((4,)),
            nn.Dense(8, activation="relu", kernel_regularizer=regularizers.L1L2(0.01, 0.02),
                     activity_regularizer="l2", kernel_constraint=constraints.MaxNorm(1.0)),
            nn.Dense(3, bias_regularizer="l2", kernel_constraint="unit_norm")])
        model.compile(gc.optim.Adam(0.05), nn.losses.SparseCategoricalCrossentropy(True),
                      device=device)
        history = model.fit(x, y, batch_size=4, epochs=3, verbose=0, shuffle=False)
        return history.history["loss"], model.get_weights()

    device_loss, device_weights = train(cl_device)
    loss, weights = train("interpret")
    np.testing.assert_allclose(device_loss, loss, rtol=1e-4)
    for got, expected in zip(device_weights, weights):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


# ---- settings ----

def test_options_are_checked():
    with pytest.warns(UserWarning, match=r"flatten_\d+ \(Flatten\) has no weight 'kernel'"
                                         r": its kernel_regularizer does nothing"):
        nn.Sequential([nn.Input((2, 2)), nn.Flatten(kernel_regularizer="l2")])
    with pytest.raises(ValueError, match="unknown regularizer 'l3'"):
        nn.Dense(2, kernel_regularizer="l3")
    with pytest.raises(ValueError, match="unknown constraint"):
        nn.Dense(2, kernel_constraint="positive")
    with pytest.raises(ValueError, match="l2 must be a finite number"):
        regularizers.L2(-1.0)


def test_options_round_trip_through_config_and_saved_model(tmp_path):
    dense = nn.Dense(2, kernel_regularizer=regularizers.L1L2(0.1, 0.2),
                     activity_regularizer="l1", bias_constraint=constraints.MaxNorm(2, axis=0))
    config = dense.get_config()
    assert config["kernel_regularizer"] == {"class_name": "L1L2",
                                            "config": {"l1": 0.1, "l2": 0.2}}
    assert nn.Dense.from_config(config).get_config() == config
    embedding = nn.Embedding(5, 2, embeddings_regularizer="l2")
    assert nn.Embedding.from_config(embedding.get_config()).get_config() == \
        embedding.get_config()
    model = nn.Sequential([nn.Input((3,)), dense, nn.Dense(1)])
    model.compile("sgd", "mse", device="interpret")
    model.save(tmp_path / "m.npz")
    loaded = nn.load_model(tmp_path / "m.npz")
    assert loaded.layers[0].get_config() == config
    x = RNG.standard_normal((4, 3)).astype(np.float32)
    y = RNG.standard_normal((4, 1)).astype(np.float32)
    assert loaded.evaluate(x, y) == pytest.approx(model.evaluate(x, y), rel=1e-6)
    with pytest.raises(ValueError, match="cannot save regularizer"):
        nn.Dense(2, kernel_regularizer=lambda w: gc.sum(w)).get_config()


# ---- add_weight, Keras's form ----

class Scale(nn.Layer):
    """A custom layer made the Keras way."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="random_normal",
                                 name="w")
        self.b = self.add_weight(shape=(input_shape[-1],), initializer="zeros",
                                 regularizer="l2", constraint="non_neg")
        self.count = self.add_weight(shape=(), dtype="int32", trainable=False)

    def call(self, x, training=False):
        return x * self.w + self.b


def test_add_weight_keras_form_and_defaults():
    gc.random.set_seed(1)
    layer = Scale(kernel_regularizer=None)
    model = nn.Sequential([nn.Input((400,)), layer])
    names = [name for name, _, _ in layer._weights]
    assert names == ["w", "variable_1", "variable_2"]
    w, b, count = layer.get_weights()
    assert w.dtype == np.float32 and 0.04 < w.std() < 0.06 and abs(w.mean()) < 0.01
    assert not b.any() and count.dtype == np.int32 and count.shape == ()
    assert [v.name for v in layer.trainable_weights] == [f"{layer.name}/w",
                                                        f"{layer.name}/variable_1"]
    default = nn.Layer()
    glorot = default.add_weight(shape=(300, 200))
    limit = np.sqrt(6 / 500)
    assert np.abs(glorot.get_value()).max() <= limit and glorot.get_value().std() > limit / 3
    legacy = default.add_weight("legacy", (2,), np.ones, False, np.float64)
    assert legacy.get_value().dtype == np.float64 and not default._weights[-1][2]
    with pytest.raises(TypeError, match="at most 3 positional"):
        default.add_weight((2,), "zeros", "float32", True)
    with pytest.raises(ValueError, match="unknown initializer"):
        default.add_weight(shape=(2,), initializer="random_gaussian")
    model.compile(gc.optim.SGD(0.1), "mse", device="interpret")
    x = RNG.standard_normal((4, 400)).astype(np.float32)
    model.fit(x, 2 * x, epochs=2, verbose=0)
    assert (layer.get_weights()[1] >= 0).all() and layer.get_weights()[1].any()


# ---- the layers with kernels in other layouts, wrappers, attention ----

def _layer_class(name):
    cls = getattr(nn, name, None)
    if cls is None:
        pytest.skip(f"gc.nn.{name} is not in this tree")
    return cls


def test_depthwise_and_conv1d_constraints_count_keras_axes():
    depthwise = _layer_class("DepthwiseConv2D")(
        3, depth_multiplier=2, kernel_constraint=constraints.MaxNorm(0.2, axis=[0, 1]))
    conv1d = _layer_class("Conv1D")(4, 3, kernel_constraint=constraints.UnitNorm(axis=[0, 1]))
    x = RNG.standard_normal((2, 2, 6, 6)).astype(np.float32) * 3
    model = nn.Sequential([nn.Input((2, 6, 6)), depthwise])
    model.compile(gc.optim.SGD(1.0), "mse", device="interpret")
    model.fit(x, RNG.standard_normal((2, 4, 4, 4)).astype(np.float32), epochs=2, verbose=0)
    kernel = depthwise.get_weights()[0]                   # (channels * 2, 1, 3, 3)
    norms = np.sqrt((kernel ** 2).sum(axis=(1, 2, 3)))     # Keras's (kh, kw) per (c, j)
    assert norms.max() <= 0.2 + 1e-5 and norms.max() > 0.19
    seq = RNG.standard_normal((2, 7, 2)).astype(np.float32)
    model = nn.Sequential([nn.Input((7, 2)), conv1d])
    model.compile(gc.optim.SGD(0.5), "mse", device="interpret")
    model.fit(seq, RNG.standard_normal((2, 5, 4)).astype(np.float32), epochs=1, verbose=0)
    kernel = conv1d.get_weights()[0]                      # (filters, channels, k)
    np.testing.assert_allclose(np.sqrt((kernel ** 2).sum(axis=(1, 2))), 1.0, rtol=1e-5)


def test_wrapped_and_attention_weights_are_regularized():
    bidirectional = _layer_class("Bidirectional")(nn.LSTM(3, kernel_regularizer="l2"))
    attention = _layer_class("MultiHeadAttention")(2, 4, kernel_regularizer=regularizers.L1(0.1))
    model = nn.Sequential([nn.Input((5, 2)), bidirectional])
    model.compile("sgd", "mse", device="interpret")
    x = RNG.standard_normal((3, 5, 2)).astype(np.float32)
    y = np.zeros((3, 6), np.float32)
    kernels = [v.get_value() for v in model.weights if v.name.endswith("/kernel")]
    assert len(kernels) == 2
    plain = ((model.predict(x) - y) ** 2).mean()
    penalty = sum(0.01 * (k.astype(np.float64) ** 2).sum() for k in kernels)
    assert model.evaluate(x, y) == pytest.approx(plain + penalty, rel=1e-5)
    query = nn.Input((5, 4))
    out = attention(query, query)
    model = nn.Model(query, out)
    model.compile("sgd", "mse", device="interpret")
    q = RNG.standard_normal((2, 5, 4)).astype(np.float32)
    kernels = [v.get_value() for v in model.weights if v.name.endswith("kernel")]
    assert len(kernels) == 4
    plain = ((model.predict(q) - q) ** 2).mean()
    penalty = sum(0.1 * np.abs(k.astype(np.float64)).sum() for k in kernels)
    assert model.evaluate(q, q) == pytest.approx(plain + penalty, rel=1e-5)
