"""DepthwiseConv2D and SeparableConv2D (Keras 3's names, arguments and defaults).

A depthwise convolution is a grouped convolution with one group per input channel: output
channel c * depth_multiplier + m sees only input channel c (Keras's order). Its kernel is
stored (channels * depth_multiplier, 1, kh, kw), graphc's grouped layout; initializers see
Keras's (kh, kw, channels, depth_multiplier). A separable convolution is a depthwise one
(no bias) followed by a 1x1 convolution to `filters` channels, with bias and activation.
"""
from __future__ import annotations

import numpy as np

import graphc as gc
from graphc.nn import initializers
from graphc.nn.base import register_layer
from graphc.nn.conv import BaseConv, keras_to_channels_first


def depthwise_init(initializer, multiplier: int):
    """Draw Keras's (kh, kw, channels, multiplier) kernel; return (channels * multiplier,
    1, kh, kw)."""
    def init(shape: tuple[int, ...]) -> np.ndarray:
        outputs, _, kh, kw = shape
        draw = np.asarray(initializer((kh, kw, outputs // multiplier, multiplier)))
        return np.transpose(draw, (2, 3, 0, 1)).reshape(shape)
    return init


@register_layer
class DepthwiseConv2D(BaseConv):
    """Each input channel convolved with its own `depth_multiplier` kernels."""

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier: int = 1,
                 data_format=None, dilation_rate=1, activation=None, use_bias: bool = True,
                 depthwise_initializer="glorot_uniform", bias_initializer="zeros",
                 dtype="float32", name: str | None = None, input_shape=None):
        super().__init__(1, kernel_size, strides, padding, data_format, dilation_rate, 1,
                         activation, use_bias, depthwise_initializer, bias_initializer, dtype,
                         name, input_shape)
        self.depth_multiplier = int(depth_multiplier)
        if self.depth_multiplier <= 0:
            raise ValueError(f"DepthwiseConv2D: depth_multiplier must be positive, got "
                             f"{depth_multiplier}")
        self.depthwise_initializer = self.kernel_initializer

    def build(self, input_shape: tuple[int, ...]) -> None:
        """kernel (channels * depth_multiplier, 1, kh, kw) and bias."""
        channels = self._channels(input_shape)
        self.groups, self.filters = channels, channels * self.depth_multiplier
        self.kernel = self.add_weight(
            "kernel", (self.filters, 1) + self.kernel_size,
            depthwise_init(self.depthwise_initializer, self.depth_multiplier), dtype=self.dtype)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.filters,), self.bias_initializer,
                                        dtype=self.dtype)

    def get_config(self) -> dict:
        config = super().get_config()
        for key in ("filters", "groups", "kernel_initializer"):
            del config[key]
        return {**config, "depth_multiplier": self.depth_multiplier,
                "depthwise_initializer": initializers.serialize(self.depthwise_initializer)}


@register_layer
class SeparableConv2D(BaseConv):
    """A depthwise convolution, then a 1x1 convolution to `filters` channels."""

    def __init__(self, filters: int, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, depth_multiplier: int = 1, activation=None,
                 use_bias: bool = True, depthwise_initializer="glorot_uniform",
                 pointwise_initializer="glorot_uniform", bias_initializer="zeros",
                 dtype="float32", name: str | None = None, input_shape=None):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate, 1,
                         activation, use_bias, depthwise_initializer, bias_initializer, dtype,
                         name, input_shape)
        self.depth_multiplier = int(depth_multiplier)
        if self.depth_multiplier <= 0:
            raise ValueError(f"SeparableConv2D: depth_multiplier must be positive, got "
                             f"{depth_multiplier}")
        self.depthwise_initializer = self.kernel_initializer
        self.pointwise_initializer = initializers.get(pointwise_initializer)

    def build(self, input_shape: tuple[int, ...]) -> None:
        """depthwise_kernel (channels * m, 1, kh, kw), pointwise_kernel (filters,
        channels * m, 1, 1) and bias (filters,)."""
        channels = self._channels(input_shape)
        self.groups, middle = channels, channels * self.depth_multiplier
        self.depthwise_kernel = self.add_weight(
            "depthwise_kernel", (middle, 1) + self.kernel_size,
            depthwise_init(self.depthwise_initializer, self.depth_multiplier), dtype=self.dtype)
        self.pointwise_kernel = self.add_weight(
            "pointwise_kernel", (self.filters, middle, 1, 1),
            keras_to_channels_first(self.pointwise_initializer), dtype=self.dtype)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.filters,), self.bias_initializer,
                                        dtype=self.dtype)

    def _convolve(self, x: gc.Tensor) -> gc.Tensor:
        depthwise = gc.conv2d(x, self.depthwise_kernel, stride=self.strides,
                              padding=self._pads(x.shape[2:]), dilation=self.dilation_rate,
                              groups=self.groups)
        return gc.conv2d(depthwise, self.pointwise_kernel)

    def get_config(self) -> dict:
        config = super().get_config()
        for key in ("groups", "kernel_initializer"):
            del config[key]
        return {**config, "depth_multiplier": self.depth_multiplier,
                "depthwise_initializer": initializers.serialize(self.depthwise_initializer),
                "pointwise_initializer": initializers.serialize(self.pointwise_initializer)}


SeparableConvolution2D = SeparableConv2D
