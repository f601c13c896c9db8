"""The Keras layers of issue 17 against independent references, forward and backward.

Each layer runs on gc.interpret in float64. Forwards are compared with numpy formulas
written from Keras's documentation here, or with PyTorch's functional ops where torch is
installed (`pip install torch==2.13.0`; those tests skip without it), gradients of the
input and of every weight with torch's autograd or with central finite differences.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import graphc as gc
from graphc import nn
from graphc.nn.base import REGISTRY

RNG = np.random.default_rng(17)
F64 = {"dtype": "float64"}


def _build(layer, x: np.ndarray, scale: float = 0.5):
    """A placeholder for x, the layer called on it (weights randomized) and the output."""
    xs = gc.placeholder(x.shape, x.dtype, name="x")
    out = layer(xs)
    for name, variable, _ in layer._weights:
        variable.set_value((RNG.standard_normal(variable.shape) * scale).astype(variable.dtype))
    return xs, out


def _forward(layer, x: np.ndarray):
    xs, out = _build(layer, x)
    return gc.interpret(out, {xs: x})


def _weights(layer) -> list[np.ndarray]:
    return [v.get_value() for v in layer.weights]


def _grads(layer, xs, out, x, direction):
    """d sum(direction * out) / d (x, *weights) by gc.grad on the interpreter."""
    loss = gc.sum(out * gc.constant(direction))
    return gc.interpret(gc.grad(loss, [xs] + layer.weights), {xs: x})


def finite_difference_error(layer, x: np.ndarray, samples: int = 6, eps: float = 1e-6):
    """Worst relative error of gc.grad against central differences, over `samples` elements
    of the input and of each weight (fed to the interpreter, so nothing is mutated)."""
    xs, out = _build(layer, x)
    direction = RNG.standard_normal(out.shape)
    loss = gc.sum(out * gc.constant(direction))
    leaves = [xs] + layer.weights
    values = [x] + _weights(layer)
    analytic = gc.interpret(gc.grad(loss, leaves), dict(zip(leaves, values)))
    worst = 0.0
    for index, (value, exact) in enumerate(zip(values, analytic)):
        for flat in RNG.choice(value.size, min(samples, value.size), replace=False):
            shifted = []
            for sign in (1, -1):
                probe = [v.copy() for v in values]
                probe[index].flat[flat] += sign * eps
                shifted.append(float(gc.interpret(loss, dict(zip(leaves, probe)))))
            numeric = (shifted[0] - shifted[1]) / (2 * eps)
            worst = max(worst, abs(exact.flat[flat] - numeric) / max(1.0, abs(numeric)))
    return worst


# ---- numpy references ----

def _same_pads(size, kernel, stride, dilation=1):
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def pool_ref(x, size, stride, reduce, same: bool):
    """NCHW pooling; 'same' pads ignored (never the max, not counted in the mean)."""
    pads = [_same_pads(n, k, s) if same else (0, 0) for n, k, s in zip(x.shape[2:], size, stride)]
    padded = np.pad(x, ((0, 0), (0, 0)) + tuple(pads), constant_values=np.nan)
    oh = (padded.shape[2] - size[0]) // stride[0] + 1
    ow = (padded.shape[3] - size[1]) // stride[1] + 1
    out = np.zeros(x.shape[:2] + (oh, ow))
    for i in range(oh):
        for j in range(ow):
            window = padded[:, :, i * stride[0]:i * stride[0] + size[0],
                            j * stride[1]:j * stride[1] + size[1]]
            out[:, :, i, j] = reduce(window, axis=(2, 3))
    return out


ACTIVATION_CASES = {
    "leaky_relu": (lambda: nn.LeakyReLU(), lambda x: np.where(x >= 0, x, 0.3 * x)),
    "leaky_relu_0.1": (lambda: nn.LeakyReLU(0.1), lambda x: np.where(x >= 0, x, 0.1 * x)),
    "elu": (lambda: nn.ELU(0.7), lambda x: np.where(x > 0, x, 0.7 * (np.exp(x) - 1))),
    "relu_capped": (lambda: nn.ReLU(max_value=1.0, negative_slope=0.1, threshold=0.2),
                    lambda x: np.minimum(np.where(x >= 0.2, x, 0.1 * (x - 0.2)), 1.0)),
    "softmax": (lambda: nn.Softmax(), lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True)),
    "softmax_axis1": (lambda: nn.Softmax(axis=1),
                      lambda x: np.exp(x) / np.exp(x).sum(1, keepdims=True)),
    "gelu": (lambda: nn.Activation("gelu"),
             lambda x: 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))),
    "permute": (lambda: nn.Permute((2, 1)), lambda x: x.transpose(0, 2, 1)),
    "global_avg_1d": (lambda: nn.GlobalAveragePooling1D(), lambda x: x.mean(1)),
    "global_max_1d_cf": (lambda: nn.GlobalMaxPooling1D(data_format="channels_first"),
                         lambda x: x.max(2)),
    "time_distributed_dense": (lambda: nn.TimeDistributed(nn.Dense(2, use_bias=False, **F64)),
                               None),
}


@pytest.mark.parametrize("make, reference", ACTIVATION_CASES.values(), ids=ACTIVATION_CASES)
def test_elementwise_and_reshaping_layers(make, reference):
    layer, x = make(), RNG.standard_normal((3, 4, 5))
    got = _forward(layer, x)
    if reference is None:                    # TimeDistributed(Dense): x @ kernel per step
        reference = lambda x: x @ layer.layer.kernel.get_value()      # noqa: E731
    np.testing.assert_allclose(got, reference(x), rtol=1e-12, atol=1e-12)
    assert finite_difference_error(make(), x) < 1e-6


IMAGE_CASES = {
    "global_avg_2d": (lambda: nn.GlobalAveragePooling2D(), lambda x: x.mean((2, 3))),
    "global_max_2d_keep": (lambda: nn.GlobalMaxPooling2D(keepdims=True),
                           lambda x: x.max((2, 3), keepdims=True)),
    "global_avg_2d_cl": (lambda: nn.GlobalAveragePooling2D(data_format="channels_last"),
                         lambda x: x.mean((1, 2))),
    "zero_padding": (lambda: nn.ZeroPadding2D(((1, 2), (0, 3))),
                     lambda x: np.pad(x, ((0, 0), (0, 0), (1, 2), (0, 3)))),
    "zero_padding_cl": (lambda: nn.ZeroPadding2D(1, data_format="channels_last"),
                        lambda x: np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))),
    "upsampling_nearest": (lambda: nn.UpSampling2D((2, 3)),
                           lambda x: x.repeat(2, axis=2).repeat(3, axis=3)),
    "max_pool_same": (lambda: nn.MaxPooling2D(3, 2, padding="same"),
                      lambda x: pool_ref(x, (3, 3), (2, 2), np.nanmax, True)),
    "avg_pool_same": (lambda: nn.AveragePooling2D((2, 3), (2, 2), padding="same"),
                      lambda x: pool_ref(x, (2, 3), (2, 2), np.nanmean, True)),
    "max_pool_same_cl": (lambda: nn.MaxPool2D(2, padding="same", data_format="channels_last"),
                         lambda x: pool_ref(x.transpose(0, 3, 1, 2), (2, 2), (2, 2), np.nanmax,
                                            True).transpose(0, 2, 3, 1)),
}


@pytest.mark.parametrize("make, reference", IMAGE_CASES.values(), ids=IMAGE_CASES)
def test_image_layers(make, reference):
    x = RNG.standard_normal((2, 3, 5, 7))
    np.testing.assert_allclose(_forward(make(), x), reference(x), rtol=1e-12, atol=1e-12)
    assert finite_difference_error(make(), x) < 1e-6


def test_pooling_1d_is_2d_pooling_along_steps():
    x = RNG.standard_normal((2, 9, 3))                               # (batch, steps, channels)
    got = _forward(nn.MaxPooling1D(3, 2, padding="same"), x)
    want = pool_ref(x.transpose(0, 2, 1)[:, :, None], (1, 3), (1, 2), np.nanmax, True)
    np.testing.assert_allclose(got, want[:, :, 0].transpose(0, 2, 1))
    got = _forward(nn.AveragePooling1D(2), x)
    np.testing.assert_allclose(got, x[:, :8].reshape(2, 4, 2, 3).mean(2))


def test_repeat_vector_and_merges():
    a, b, c = (RNG.standard_normal((3, 4)) for _ in range(3))
    np.testing.assert_array_equal(_forward(nn.RepeatVector(5), a),
                                  np.broadcast_to(a[:, None], (3, 5, 4)))
    inputs = [gc.placeholder(v.shape, v.dtype) for v in (a, b, c)]
    feeds = dict(zip(inputs, (a, b, c)))
    cases = [(nn.Multiply(), a * b * c), (nn.Average(), (a + b + c) / 3),
             (nn.Maximum(), np.maximum(np.maximum(a, b), c)),
             (nn.Minimum(), np.minimum(np.minimum(a, b), c))]
    for layer, want in cases:
        np.testing.assert_allclose(gc.interpret(layer(inputs), feeds), want, rtol=1e-12)
    np.testing.assert_allclose(gc.interpret(nn.Subtract()(inputs[:2]), feeds), a - b)
    with pytest.raises(ValueError, match="exactly 2 inputs"):
        nn.Subtract()(inputs)


def test_bilinear_upsampling_matches_half_pixel_interpolation():
    x = RNG.standard_normal((1, 2, 3, 4))
    got = _forward(nn.UpSampling2D((2, 2), interpolation="bilinear"), x)
    # half-pixel centres: output row i samples input row (i + 0.5) / 2 - 0.5, clamped
    def axis_weights(n):
        w = np.zeros((2 * n, n))
        for i in range(2 * n):
            pos = min(max((i + 0.5) / 2 - 0.5, 0), n - 1)
            low = int(math.floor(pos))
            w[i, low] += 1 - (pos - low)
            w[i, min(low + 1, n - 1)] += pos - low
        return w
    want = np.einsum("ih,nchw,jw->ncij", axis_weights(3), x, axis_weights(4))
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert finite_difference_error(nn.UpSampling2D(interpolation="bilinear"), x) < 1e-6


def test_layer_normalization_over_several_axes_and_rms():
    x = RNG.standard_normal((3, 4, 5)) * 2 + 1
    layer = nn.LayerNormalization(axis=[1, 2], epsilon=1e-3, **F64)
    got = _forward(layer, x)
    gamma, beta = _weights(layer)
    mean, var = x.mean((1, 2), keepdims=True), x.var((1, 2), keepdims=True)
    np.testing.assert_allclose(got, (x - mean) / np.sqrt(var + 1e-3) * gamma + beta,
                               rtol=1e-10)
    layer = nn.LayerNormalization(rms_scaling=True, **F64)
    got = _forward(layer, x)
    (gamma,) = _weights(layer)
    np.testing.assert_allclose(got, x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-3) * gamma,
                               rtol=1e-10)
    for make in (lambda: nn.LayerNormalization(axis=[1, 2], **F64),
                 lambda: nn.LayerNormalization(rms_scaling=True, **F64),
                 lambda: nn.LayerNormalization(**F64)):
        assert finite_difference_error(make(), x) < 1e-6


def test_multi_head_attention_gradients_by_finite_differences():
    layer = nn.MultiHeadAttention(2, 3, value_dim=2, **F64)
    xs = gc.placeholder((2, 4, 5), gc.float64)
    out = layer(xs, xs, use_causal_mask=True)
    for variable in layer.weights:
        variable.set_value(RNG.standard_normal(variable.shape) * 0.5)
    direction = gc.constant(RNG.standard_normal(out.shape))
    error, where = gc.gradcheck(lambda x: layer(x, x, use_causal_mask=True) * direction,
                                [RNG.standard_normal((2, 4, 5))])
    assert error < 1e-6, where


def test_bidirectional_lstm_is_a_forward_and_a_reversed_pass():
    from test_nn_layers import rnn_ref
    x = RNG.standard_normal((2, 4, 3))
    for mode, merge in [("concat", lambda f, b: np.concatenate([f, b], -1)),
                        ("sum", np.add), ("ave", lambda f, b: (f + b) / 2),
                        ("mul", np.multiply)]:
        layer = nn.Bidirectional(nn.LSTM(3, return_sequences=True, **F64), merge_mode=mode)
        got = _forward(layer, x)
        forward, backward = layer.forward_layer, layer.backward_layer
        want_f = rnn_ref(forward, x, _named(forward))
        want_b = rnn_ref(backward, x[:, ::-1], _named(backward))[:, ::-1]
        np.testing.assert_allclose(got, merge(want_f, want_b), rtol=1e-10, atol=1e-12)
    layer = nn.Bidirectional(nn.GRU(2, **F64), merge_mode=None)
    out = _forward(layer, x)
    assert isinstance(out, list) and len(out) == 2
    np.testing.assert_allclose(out[1], rnn_ref(layer.backward_layer, x[:, ::-1],
                                               _named(layer.backward_layer)), rtol=1e-10)
    assert finite_difference_error(nn.Bidirectional(nn.SimpleRNN(2, **F64)), x) < 1e-6


def _named(layer) -> dict[str, np.ndarray]:
    return {name: v.get_value() for name, v, _ in layer._weights}


def test_bidirectional_weights_are_the_two_layers_weights():
    layer = nn.Bidirectional(nn.GRU(3), input_shape=(5, 2))
    model = nn.Sequential([layer])
    assert [w.name.split("/")[0] for w in model.weights] == \
        [layer.forward_layer.name] * 3 + [f"backward_{layer.forward_layer.name}"] * 3
    assert len(model.trainable_weights) == 6


# ---- torch references ----

def _torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


def _compare_with_torch(layer, x: np.ndarray, torch_forward, rtol=1e-9):
    """Forward and the gradients of x and of every weight against torch's autograd, float64.
    `torch_forward(torch, x, weights)` computes the layer from torch tensors."""
    torch = _torch()
    xs, out = _build(layer, x)
    direction = RNG.standard_normal(out.shape)
    got = gc.interpret([out] + _grads_list(layer, xs, out, x, direction), {xs: x})
    tensors = [torch.tensor(v, requires_grad=True) for v in [x] + _weights(layer)]
    want = torch_forward(torch, tensors[0], tensors[1:])
    (want * torch.tensor(direction)).sum().backward()
    np.testing.assert_allclose(got[0], want.detach().numpy(), rtol=rtol, atol=rtol)
    for g, t in zip(got[1:], tensors):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=rtol, atol=rtol)


def _grads_list(layer, xs, out, x, direction):
    return gc.grad(gc.sum(out * gc.constant(direction)), [xs] + layer.weights)


def _tf_same(torch, x, kernel, stride, dilation):
    """x padded as TensorFlow's 'same' (odd pixel at the end), NC + spatial."""
    pads = []
    for n, k, s, d in reversed(list(zip(x.shape[2:], kernel, stride, dilation))):
        pads += list(_same_pads(n, k, s, d))
    return torch.nn.functional.pad(x, pads)


CONV1D_CASES = {"valid": dict(filters=4, kernel_size=3),
                "same_strided": dict(filters=3, kernel_size=4, strides=2, padding="same"),
                "causal_dilated": dict(filters=2, kernel_size=3, padding="causal",
                                       dilation_rate=2),
                "groups_cf": dict(filters=4, kernel_size=2, groups=2,
                                  data_format="channels_first")}


@pytest.mark.parametrize("kwargs", CONV1D_CASES.values(), ids=CONV1D_CASES)
def test_conv1d_matches_torch(kwargs):
    layer = nn.Conv1D(**kwargs, **F64)
    first = layer.data_format == "channels_first"
    x = RNG.standard_normal((2, 4, 9) if first else (2, 9, 4))

    def forward(torch, x, w):
        f = torch.nn.functional
        x = x if first else x.transpose(1, 2)
        if layer.padding == "causal":
            x = f.pad(x, ((layer.kernel_size[0] - 1) * layer.dilation_rate[0], 0))
        elif layer.padding == "same":
            x = _tf_same(torch, x, layer.kernel_size, layer.strides, layer.dilation_rate)
        y = f.conv1d(x, w[0], w[1], stride=layer.strides, dilation=layer.dilation_rate,
                     groups=layer.groups)
        return y if first else y.transpose(1, 2)
    _compare_with_torch(layer, x, forward)


def test_conv2d_channels_last_matches_torch():
    layer = nn.Conv2D(3, (2, 3), strides=(2, 1), padding="same", data_format="channels_last",
                      activation="elu", **F64)

    def forward(torch, x, w):
        f = torch.nn.functional
        x = _tf_same(torch, x.permute(0, 3, 1, 2), layer.kernel_size, layer.strides, (1, 1))
        return f.elu(f.conv2d(x, w[0], w[1], stride=layer.strides)).permute(0, 2, 3, 1)
    _compare_with_torch(layer, RNG.standard_normal((2, 5, 6, 4)), forward)


TRANSPOSE_CASES = {"valid": dict(filters=3, kernel_size=3, strides=2),
                   "same": dict(filters=2, kernel_size=3, strides=2, padding="same"),
                   "same_even_kernel": dict(filters=2, kernel_size=(4, 2), strides=(2, 3),
                                            padding="same"),
                   "kernel_below_stride": dict(filters=2, kernel_size=2, strides=3),
                   "output_padding": dict(filters=2, kernel_size=3, strides=2,
                                          output_padding=1),
                   "dilated_cl": dict(filters=2, kernel_size=2, dilation_rate=2,
                                      data_format="channels_last")}


@pytest.mark.parametrize("kwargs", TRANSPOSE_CASES.values(), ids=TRANSPOSE_CASES)
def test_conv2d_transpose_matches_torch(kwargs):
    layer = nn.Conv2DTranspose(**kwargs, **F64)
    last = layer.data_format == "channels_last"
    x = RNG.standard_normal((2, 4, 5, 3) if last else (2, 3, 4, 5))
    hw = layer.output_hw(x.shape[1:3] if last else x.shape[2:])

    def forward(torch, x, w):
        f = torch.nn.functional
        x = x.permute(0, 3, 1, 2) if last else x
        full = f.conv_transpose2d(x, w[0], stride=layer.strides, dilation=layer.dilation_rate)
        pads = [_same_pads(n, k, s, d) if layer.padding == "same" else (0, 0) for n, k, s, d
                in zip(hw, layer.kernel_size, layer.strides, layer.dilation_rate)]
        extra = [max(n + p[0] - m, 0) for n, p, m in zip(hw, pads, full.shape[2:])]
        full = f.pad(full, (0, extra[1], 0, extra[0]))         # rows past the last window
        y = full[:, :, pads[0][0]:pads[0][0] + hw[0], pads[1][0]:pads[1][0] + hw[1]]
        y = y + w[1].reshape(1, -1, 1, 1)
        return y.permute(0, 2, 3, 1) if last else y
    _compare_with_torch(layer, x, forward)


def test_transposed_lengths_follow_keras():
    length = nn.conv.transposed_length
    assert length(4, 3, 2, 1, "valid", None) == 9          # 4*2 + max(3-2, 0)
    assert length(4, 2, 3, 1, "valid", None) == 12
    assert length(4, 3, 2, 1, "same", None) == 8
    assert length(4, 3, 2, 1, "valid", 1) == 10            # (4-1)*2 + 3 + 1
    assert length(4, 3, 2, 1, "same", 1) == 8              # (4-1)*2 + 3 - 2 + 1


@pytest.mark.parametrize("multiplier", [1, 2])
def test_depthwise_and_separable_match_torch(multiplier):
    x = RNG.standard_normal((2, 3, 6, 5))
    depthwise = nn.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=multiplier,
                                   **F64)

    def forward(torch, x, w):
        x = _tf_same(torch, x, (3, 3), (2, 2), (1, 1))
        return torch.nn.functional.conv2d(x, w[0], w[1], stride=2, groups=3)
    _compare_with_torch(depthwise, x, forward)
    separable = nn.SeparableConv2D(4, (2, 3), depth_multiplier=multiplier, activation="relu",
                                   **F64)

    def separable_forward(torch, x, w):
        f = torch.nn.functional
        return f.relu(f.conv2d(f.conv2d(x, w[0], groups=3), w[1], w[2]))
    _compare_with_torch(separable, x, separable_forward)


def test_depthwise_kernel_order_is_keras():
    """Output channel c * multiplier + m sees input channel c only (Keras's order)."""
    layer = nn.DepthwiseConv2D(1, depth_multiplier=2, use_bias=False, **F64)
    x = np.zeros((1, 3, 2, 2))
    x[0, 1] = 1.0
    got = _forward(layer, x)
    kernel = layer.kernel.get_value()[:, 0, 0, 0]
    np.testing.assert_allclose(got[0, :, 0, 0], [0, 0, kernel[2], kernel[3], 0, 0])


def test_layer_normalization_matches_torch():
    layer = nn.LayerNormalization(epsilon=1e-5, **F64)

    def forward(torch, x, w):
        return torch.nn.functional.layer_norm(x, (x.shape[-1],), w[0], w[1], 1e-5)
    _compare_with_torch(layer, RNG.standard_normal((3, 4, 19)) * 3 + 1, forward)


def test_gelu_matches_torch():
    layer = nn.Dense(5, activation="gelu", **F64)

    def forward(torch, x, w):
        return torch.nn.functional.gelu(x @ w[0] + w[1])
    _compare_with_torch(layer, RNG.standard_normal((4, 3)) * 2, forward)


def test_bilinear_upsampling_matches_torch():
    layer = nn.UpSampling2D((3, 2), interpolation="bilinear")

    def forward(torch, x, w):
        return torch.nn.functional.interpolate(x, scale_factor=(3, 2), mode="bilinear",
                                               align_corners=False)
    _compare_with_torch(layer, RNG.standard_normal((2, 3, 4, 5)), forward)


def mha_torch(torch, heads, key_dim, query, value, key, w, causal=False, mask=None):
    """Keras's MultiHeadAttention equations with einsum (weights in Keras's shapes)."""
    wq, bq, wk, bk, wv, bv, wo, bo = w
    q = (torch.einsum("btd,dhk->bthk", query, wq) + bq) / math.sqrt(key_dim)
    k = torch.einsum("bsd,dhk->bshk", key, wk) + bk
    v = torch.einsum("bsd,dhk->bshk", value, wv) + bv
    logits = torch.einsum("bthk,bshk->bhts", q, k)
    if causal:
        keep = torch.tril(torch.ones(logits.shape[-2:], dtype=torch.bool))
        logits = torch.where(keep, logits, torch.tensor(-1e9, dtype=logits.dtype))
    if mask is not None:
        logits = torch.where(mask[:, None], logits, torch.tensor(-1e9, dtype=logits.dtype))
    scores = torch.softmax(logits, dim=-1)
    mixed = torch.einsum("bhts,bshk->bthk", scores, v)
    return torch.einsum("bthk,hkd->btd", mixed, wo) + bo, scores


@pytest.mark.parametrize("causal", [False, True])
def test_self_attention_matches_torch(causal):
    layer = nn.MultiHeadAttention(num_heads=3, key_dim=4, **F64)
    x = RNG.standard_normal((2, 5, 6))
    xs = gc.placeholder(x.shape, gc.float64)
    out = layer(xs, xs, use_causal_mask=causal)
    for variable in layer.weights:
        variable.set_value(RNG.standard_normal(variable.shape) * 0.5)
    direction = RNG.standard_normal(out.shape)
    got = gc.interpret([out] + _grads_list(layer, xs, out, x, direction), {xs: x})
    torch = _torch()
    tensors = [torch.tensor(v, requires_grad=True) for v in [x] + _weights(layer)]
    want, _ = mha_torch(torch, 3, 4, tensors[0], tensors[0], tensors[0], tensors[1:], causal)
    (want * torch.tensor(direction)).sum().backward()
    np.testing.assert_allclose(got[0], want.detach().numpy(), rtol=1e-10, atol=1e-12)
    for g, t in zip(got[1:], tensors):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_cross_attention_with_mask_and_scores_matches_torch():
    layer = nn.MultiHeadAttention(2, 3, output_shape=4, **F64)
    q, v, k = (RNG.standard_normal(s) for s in ((2, 3, 5), (2, 4, 6), (2, 4, 7)))
    mask = RNG.random((2, 3, 4)) < 0.7
    mask[:, :, 0] = True
    qs, vs, ks = (gc.placeholder(a.shape, gc.float64) for a in (q, v, k))
    ms = gc.placeholder(mask.shape, gc.bool_)
    out, scores = layer(qs, vs, ks, attention_mask=ms, return_attention_scores=True)
    for variable in layer.weights:
        variable.set_value(RNG.standard_normal(variable.shape) * 0.5)
    got = gc.interpret([out, scores], {qs: q, vs: v, ks: k, ms: mask})
    torch = _torch()
    weights = [torch.tensor(w) for w in _weights(layer)]
    want, want_scores = mha_torch(torch, 2, 3, *(torch.tensor(a) for a in (q, v, k)), weights,
                                  mask=torch.tensor(mask))
    assert out.shape == (2, 3, 4) and scores.shape == (2, 2, 3, 4)
    np.testing.assert_allclose(got[0], want.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got[1], want_scores.numpy(), rtol=1e-10, atol=1e-12)
    assert np.all(got[1][~np.broadcast_to(mask[:, None], got[1].shape)] < 1e-300)


def test_attention_weight_shapes_follow_keras():
    layer = nn.MultiHeadAttention(4, 8, value_dim=6)
    layer(gc.placeholder((2, 5, 16)), gc.placeholder((2, 7, 12)))
    assert [(w.name.split("/", 1)[1], w.shape) for w in layer.weights] == [
        ("query/kernel", (16, 4, 8)), ("query/bias", (4, 8)), ("key/kernel", (12, 4, 8)),
        ("key/bias", (4, 8)), ("value/kernel", (12, 4, 6)), ("value/bias", (4, 6)),
        ("attention_output/kernel", (4, 6, 16)), ("attention_output/bias", (16,))]


# ---- configs, saving, errors ----

ALL_NEW_LAYERS = [
    lambda: nn.Conv1D(2, 3, padding="causal"), lambda: nn.Conv2D(2, 3, data_format="channels_last"),
    lambda: nn.Conv2DTranspose(2, 3, strides=2, output_padding=1),
    lambda: nn.DepthwiseConv2D(3, depth_multiplier=2), lambda: nn.SeparableConv2D(3, 2),
    lambda: nn.MaxPooling2D(padding="same"), lambda: nn.AveragePooling1D(),
    lambda: nn.GlobalAveragePooling1D(), lambda: nn.GlobalMaxPooling2D(keepdims=True),
    lambda: nn.UpSampling2D(interpolation="bilinear"), lambda: nn.ZeroPadding2D((1, 2)),
    lambda: nn.LayerNormalization(axis=[1, 2]), lambda: nn.MultiHeadAttention(2, 4),
    lambda: nn.Bidirectional(nn.LSTM(3), merge_mode="sum"),
    lambda: nn.TimeDistributed(nn.Dense(3)), lambda: nn.LeakyReLU(0.1), lambda: nn.ELU(),
    lambda: nn.ReLU(6.0), lambda: nn.Softmax(axis=1), lambda: nn.Permute((2, 1)),
    lambda: nn.RepeatVector(3), lambda: nn.Multiply(), lambda: nn.Subtract(),
    lambda: nn.Average(), lambda: nn.Maximum(), lambda: nn.Minimum(),
    lambda: nn.PositionEmbedding(10), lambda: nn.Lambda(_double)]


@nn.register_function
def _double(x):
    return x * 2.0


@pytest.mark.parametrize("make", ALL_NEW_LAYERS)
def test_config_round_trip(make):
    layer = make()
    config = layer.get_config()
    assert REGISTRY[type(layer).__name__] is type(layer)
    assert type(layer).from_config(config).get_config() == config


def test_keras_aliases():
    assert nn.MaxPooling2D is nn.MaxPool2D and nn.AveragePooling2D is nn.AvgPool2D
    assert nn.GlobalAvgPool2D is nn.GlobalAveragePooling2D and nn.Convolution2D is nn.Conv2D
    assert nn.MaxPooling1D is nn.MaxPool1D and nn.SeparableConvolution2D is nn.SeparableConv2D


def _small_model():
    inputs = nn.Input((6, 6, 2))
    h = nn.Conv2D(4, 3, padding="same", data_format="channels_last", activation="relu")(inputs)
    h = nn.DepthwiseConv2D(3, padding="same", data_format="channels_last")(h)
    h = nn.MaxPooling2D(2, data_format="channels_last")(h)
    tokens = nn.Reshape((9, 4))(h)
    tokens = nn.LayerNormalization()(tokens)
    attended = nn.MultiHeadAttention(2, 2, use_causal_mask=True)(tokens, tokens)
    h = nn.Add()([tokens, attended])
    h = nn.Bidirectional(nn.GRU(3, return_sequences=True))(h)
    h = nn.TimeDistributed(nn.Dense(2))(h)
    h = nn.Lambda(_double)(nn.GlobalAveragePooling1D()(h))
    return nn.Model(inputs, nn.Dense(3)(nn.LeakyReLU()(h)))


def test_model_of_new_layers_saves_and_loads(tmp_path):
    model = _small_model()
    x = RNG.standard_normal((4, 6, 6, 2)).astype(np.float32)
    model.compile("adam", nn.losses.SparseCategoricalCrossentropy(from_logits=True),
                  device="interpret")
    before = model.predict(x)
    model.save(tmp_path / "m.npz")
    loaded = nn.load_model(tmp_path / "m.npz")
    loaded.compile("adam", nn.losses.SparseCategoricalCrossentropy(from_logits=True),
                   device="interpret")
    np.testing.assert_array_equal(loaded.predict(x), before)
    assert [type(layer).__name__ for layer in loaded.layers] == \
        [type(layer).__name__ for layer in model.layers]


def test_lambda_of_an_anonymous_function_cannot_be_saved(tmp_path):
    inputs = nn.Input((3,))
    model = nn.Model(inputs, nn.Lambda(lambda x: x + 1.0)(inputs))
    with pytest.raises(ValueError, match="register_function"):
        model.save(tmp_path / "m.npz")
    with pytest.raises(ValueError, match="is not registered"):
        nn.Lambda("nowhere.function")


def test_channels_last_input_to_a_channels_first_conv_is_explained():
    with pytest.warns(nn.ChannelsLastWarning, match=r"Input\(\(1, 28, 28\)\)"):
        layer = nn.Conv2D(8, 3)
        with pytest.raises(gc.ShapeError) as error:
            layer(gc.placeholder((2, 28, 28, 1)))
    text = str(error.value)
    assert "channels_first" in text and "data_format='channels_last'" in text
    assert "conv2d" in text and layer.name in text and "test_nn_keras_layers.py" in text


def test_shape_errors_without_the_habit_carry_no_hint():
    with pytest.raises(gc.ShapeError) as error:
        nn.Conv2D(8, 5)(gc.placeholder((2, 1, 3, 3)))
    assert "hint" not in str(error.value)


# ---- compiled on the device ----

DEVICE_LAYERS = {
    "conv1d_causal": (lambda: nn.Conv1D(3, 3, padding="causal"), (2, 7, 4)),
    "conv2d_transpose_same": (lambda: nn.Conv2DTranspose(3, 3, strides=2, padding="same"),
                              (2, 2, 4, 5)),
    "depthwise": (lambda: nn.DepthwiseConv2D(3, depth_multiplier=2, padding="same"),
                  (2, 3, 5, 5)),
    "separable_cl": (lambda: nn.SeparableConv2D(4, 2, data_format="channels_last"),
                     (2, 5, 5, 3)),
    "pools_same": (lambda: nn.Sequential([nn.MaxPooling2D(3, 2, padding="same"),
                                          nn.AveragePooling2D(2, padding="same")]),
                   (2, 2, 7, 6)),
    "upsampling_bilinear": (lambda: nn.UpSampling2D(interpolation="bilinear"), (2, 2, 3, 4)),
    "layer_norm": (lambda: nn.LayerNormalization(), (3, 5, 19)),
    "attention": (lambda: _SelfAttention(nn.MultiHeadAttention(2, 4)), (2, 5, 6)),
    "bidirectional": (lambda: nn.Bidirectional(nn.LSTM(3, return_sequences=True)), (2, 4, 3)),
}


class _SelfAttention(nn.Layer):
    """mha(x, x, use_causal_mask=True) as a one-input layer."""

    def __init__(self, attention):
        super().__init__()
        self.attention = attention

    def call(self, x, training=False):
        out = self.attention(x, x, use_causal_mask=True)
        self._weights = self.attention._weights
        return out


@pytest.mark.opencl
@pytest.mark.parametrize("make, shape", DEVICE_LAYERS.values(), ids=DEVICE_LAYERS)
def test_compiled_forward_and_gradients_equal_interpreter(cl_device, make, shape):
    layer = make()
    x = RNG.standard_normal(shape).astype(np.float32)
    xs, out = _build(layer, x)
    direction = gc.placeholder(out.shape, gc.float32, name="u")
    loss = gc.sum(out * direction)
    outputs = [out] + gc.grad(loss, [xs] + layer.trainable_weights)
    u = RNG.standard_normal(out.shape).astype(np.float32)
    want = gc.interpret(outputs, {xs: x, direction: u})
    got = gc.function([xs, direction], outputs, device=cl_device)(x, u)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-5)


@pytest.mark.opencl
def test_channels_last_convolutions_cost_no_transpose_kernels(cl_device):
    """Consecutive channels_last layers: their transposes cancel, so the step has the
    kernels of the channels_first model plus at most one copy of the input."""
    def step(data_format, shape):
        x = gc.placeholder((4,) + shape, gc.float32)
        layers = [nn.Conv2D(4, 3, padding="same", activation="relu", data_format=data_format),
                  nn.Conv2D(4, 3, padding="same", data_format=data_format),
                  nn.MaxPooling2D(2, data_format=data_format),
                  nn.GlobalAveragePooling2D(data_format=data_format)]
        h = x
        for layer in layers:
            h = layer(h)
        weights = [w for layer in layers for w in layer.weights]
        updates = gc.optim.SGD(0.1).updates(gc.sum(h * h), weights)
        return gc.function([x], [h], updates=updates, device=cl_device).kernel_count
    first, last = step("channels_first", (2, 8, 8)), step("channels_last", (8, 8, 2))
    assert last <= first + 1, (first, last)
