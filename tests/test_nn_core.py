"""gc.nn core layers (Dense, Flatten, Reshape, Activation, Dropout), activations and seeded
initializers, against numpy on the reference interpreter."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc import nn
from graphc.nn import initializers

RNG = np.random.default_rng(7)


def _forward(layer, x, training=False):
    xs = gc.placeholder(x.shape, gc.float32, name="x")
    return gc.interpret(layer(xs, training=training), {xs: x})


def test_dense_matches_numpy_and_config():
    layer = nn.Dense(4, activation="tanh", name="d")
    x = RNG.standard_normal((3, 5)).astype(np.float32)
    got = _forward(layer, x)
    kernel, bias = layer.get_weights()
    np.testing.assert_allclose(got, np.tanh(x @ kernel + bias), rtol=1e-5, atol=1e-6)
    assert kernel.shape == (5, 4) and np.all(bias == 0)
    config = layer.get_config()
    assert config["activation"] == "tanh" and config["kernel_initializer"] == "glorot_uniform"
    clone = nn.Dense.from_config(config)
    assert clone.units == 4 and clone.name == "d"


def test_flatten_reshape_activation():
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    assert _forward(nn.Flatten(), x).shape == (2, 12)
    np.testing.assert_array_equal(_forward(nn.Reshape((4, -1)), x), x.reshape(2, 4, 3))
    np.testing.assert_allclose(_forward(nn.Activation("softmax"), x),
                               np.exp(x) / np.exp(x).sum(-1, keepdims=True), rtol=1e-5)
    with pytest.raises(gc.ShapeError, match="cannot reshape"):
        _forward(nn.Reshape((5,)), x)


@pytest.mark.parametrize("name,ref", [
    ("relu", lambda x: np.maximum(x, 0)), ("sigmoid", lambda x: 1 / (1 + np.exp(-x))),
    ("elu", lambda x: np.where(x > 0, x, np.exp(x) - 1)),
    ("softplus", lambda x: np.log1p(np.exp(x))), ("softsign", lambda x: x / (1 + abs(x))),
    ("silu", lambda x: x / (1 + np.exp(-x))), ("leaky_relu", lambda x: np.where(x > 0, x, .2 * x)),
    ("hard_sigmoid", lambda x: np.clip(x + 3, 0, 6) / 6), ("linear", lambda x: x)])
def test_activations(name, ref):
    x = np.linspace(-4, 4, 17, dtype=np.float32).reshape(1, -1)
    np.testing.assert_allclose(_forward(nn.Activation(name), x), ref(x), rtol=1e-5, atol=1e-6)


def test_dropout_is_identity_at_inference_and_scales_in_training():
    x = np.ones((20, 50), np.float32)
    layer = nn.Dropout(0.25, seed=3)
    np.testing.assert_array_equal(_forward(layer, x), x)
    got = _forward(layer, x, training=True)
    assert set(np.unique(got)) <= {0.0, np.float32(1 / 0.75)}
    assert 0.15 < (got == 0).mean() < 0.35


def test_initializers_seeded_and_scaled():
    init = initializers.GlorotUniform(seed=5)
    a, b = init((40, 60)), init((40, 60))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a).max() <= np.sqrt(6 / 100) and a.std() == pytest.approx(np.sqrt(2 / 100), 0.1)
    he = initializers.get("he_normal")((3, 3, 50, 8))        # Keras's HWIO fans: 450 in
    assert np.abs(he).max() <= 2 * np.sqrt(2 / 450) / 0.8796 + 1e-6
    assert initializers.compute_fans((3, 3, 50, 8)) == (450, 72)
    q = initializers.Orthogonal(seed=1)((6, 4))
    np.testing.assert_allclose(q.T @ q, np.eye(4), atol=1e-5)
    assert initializers.get("zeros")((2,)).tolist() == [0, 0]
    with pytest.raises(ValueError, match="unknown initializer"):
        initializers.get("glorot")


def test_same_global_seed_gives_same_weights():
    def weights():
        gc.random.set_seed(11)
        return nn.Sequential([nn.Input((6,)), nn.Dense(16), nn.Dense(3)]).get_weights()
    first, second = weights(), weights()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    gc.random.set_seed(12)
    other = nn.Sequential([nn.Input((6,)), nn.Dense(16)]).get_weights()
    assert not np.array_equal(first[0], other[0])
