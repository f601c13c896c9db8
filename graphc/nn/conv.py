"""Convolution and pooling layers over NCHW ("channels_first") images.

Inputs are (batch, channels, height, width), as graphc's conv2d and pools expect; kernels
are stored OIHW (filters, channels / groups, kernel_h, kernel_w). Initializers see Keras's
HWIO kernel shape, so their fan computation is Keras's; the result is transposed to OIHW.
"""
from __future__ import annotations

import numpy as np

import graphc as gc
from graphc.nn import activations, initializers
from graphc.nn.base import Layer, register_layer

Pair = tuple[int, int]


def _pair(value, what: str) -> Pair:
    """An int or a pair of ints as a pair."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
        raise ValueError(f"{what} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def _same_pads(size: int, kernel: int, stride: int, dilation: int) -> Pair:
    """Keras's 'same' padding: output ceil(size / stride), the odd pixel at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _hwio_to_oihw(initializer):
    """Call `initializer` on Keras's (kh, kw, in, out) shape and return an OIHW array."""
    def init(shape: tuple[int, ...]) -> np.ndarray:
        out, inp, kh, kw = shape
        return np.transpose(np.asarray(initializer((kh, kw, inp, out))), (3, 2, 0, 1))
    return init


@register_layer
class Conv2D(Layer):
    """2-D convolution of (batch, channels, height, width) input; kernel stored OIHW."""

    def __init__(self, filters: int, kernel_size, strides=1, padding="valid",
                 dilation_rate=1, groups: int = 1, activation=None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 dtype="float32", name: str | None = None, input_shape=None):
        super().__init__(name, input_shape)
        self.filters, self.groups, self.use_bias = int(filters), int(groups), bool(use_bias)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        self.dilation_rate = _pair(dilation_rate, "dilation_rate")
        self.padding = padding if isinstance(padding, str) else _pair(padding, "padding")
        if isinstance(padding, str) and padding not in ("valid", "same"):
            raise ValueError(f"Conv2D: padding must be 'valid', 'same' or ints, got {padding!r}")
        self.activation = activations.get(activation)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.dtype = np.dtype(dtype)

    def build(self, input_shape: tuple[int, ...]) -> None:
        """Kernel (filters, channels / groups, kh, kw) and bias (filters,)."""
        channels = input_shape[0]
        if channels % self.groups or self.filters % self.groups:
            raise ValueError(f"Conv2D {self.name}: channels ({channels}) and filters"
                             f" ({self.filters}) must be divisible by groups ({self.groups})")
        shape = (self.filters, channels // self.groups) + self.kernel_size
        init = _hwio_to_oihw(self.kernel_initializer)
        self.kernel = self.add_weight("kernel", shape, init, dtype=self.dtype)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.filters,), self.bias_initializer,
                                        dtype=self.dtype)

    def _pads(self, hw: tuple[int, ...]):
        if self.padding != "same":
            return self.padding
        return tuple(_same_pads(size, k, s, d) for size, k, s, d
                     in zip(hw, self.kernel_size, self.strides, self.dilation_rate))

    def call(self, x: gc.Tensor, training: bool = False) -> gc.Tensor:
        out = gc.conv2d(x, self.kernel, stride=self.strides, padding=self._pads(x.shape[2:]),
                        dilation=self.dilation_rate, groups=self.groups, bias=self.bias)
        return self.activation(out)

    def get_config(self) -> dict:
        padding = self.padding if isinstance(self.padding, str) else list(self.padding)
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": padding, "dilation_rate": list(self.dilation_rate),
                "groups": self.groups, "activation": activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "dtype": self.dtype.name}


class _Pool2D(Layer):
    """Shared settings of the 2-D pooling layers (no weights)."""

    def __init__(self, pool_size=2, strides=None, padding=0, name: str | None = None,
                 input_shape=None):
        super().__init__(name, input_shape)
        self.pool_size = _pair(pool_size, "pool_size")
        self.strides = self.pool_size if strides is None else _pair(strides, "strides")
        if padding == "valid":
            padding = 0
        if isinstance(padding, str):
            raise ValueError(f"{type(self).__name__}: padding must be 'valid' or ints (symmetric,"
                             f" at most half the pool size), got {padding!r}")
        self.padding = _pair(padding, "padding")

    def get_config(self) -> dict:
        return {**super().get_config(), "pool_size": list(self.pool_size),
                "strides": list(self.strides), "padding": list(self.padding)}


@register_layer
class MaxPool2D(_Pool2D):
    """Max pooling of (batch, channels, height, width) input; padding counts as -inf."""

    def call(self, x: gc.Tensor, training: bool = False) -> gc.Tensor:
        return gc.max_pool2d(x, self.pool_size, self.strides, self.padding)


@register_layer
class AvgPool2D(_Pool2D):
    """Average pooling of (batch, channels, height, width) input; padding counts as 0."""

    def call(self, x: gc.Tensor, training: bool = False) -> gc.Tensor:
        return gc.avg_pool2d(x, self.pool_size, self.strides, self.padding)


MaxPooling2D, AveragePooling2D = MaxPool2D, AvgPool2D
