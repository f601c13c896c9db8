"""Convolution layers: Conv1D, Conv2D and Conv2DTranspose (Keras 3's names and arguments).

Kernels are stored channels_first, as graphc's conv2d takes them: Conv2D (filters,
channels / groups, kh, kw), Conv1D (filters, channels / groups, k), Conv2DTranspose
(channels, filters, kh, kw) (PyTorch's layouts). Initializers see Keras's kernel shape
(kh, kw, in, out), so their fan computation is Keras's; the draw is transposed. Inputs are
channels_first by default for 2-D layers and channels_last for Conv1D (graphc/nn/layout.py).
A Conv1D is a Conv2D over images one pixel high.
"""
from __future__ import annotations

import numpy as np

import graphc as gc
from graphc import dtypes
from graphc.builder import apply
from graphc.nn import activations, initializers, layout
from graphc.nn.base import Layer, register_layer
from graphc.ops.linalg import conv_shape

_same_pads = layout.same_pads           # kept for callers of the old name


def _pair(value, what: str) -> tuple[int, int]:
    """An int or a pair of ints as a pair."""
    return layout.tuple_of(value, 2, what)


def keras_to_channels_first(initializer):
    """Call `initializer` on Keras's (*kernel, in, out) shape for a kernel of graphc's shape
    (out, in, *kernel), and transpose the draw to it."""
    def init(shape: tuple[int, ...]) -> np.ndarray:
        out, inp, *kernel = shape
        rank = len(kernel)
        draw = np.asarray(initializer(tuple(kernel) + (inp, out)))
        return np.transpose(draw, (rank + 1, rank) + tuple(range(rank)))
    return init


_hwio_to_oihw = keras_to_channels_first     # the old name


class BaseConv(Layer):
    """Settings, weights and call shared by the convolutions of rank 1 and 2."""

    RANK = 2
    PADDINGS = ("valid", "same")
    DEFAULT_FORMAT = layout.CHANNELS_FIRST

    def __init__(self, filters: int, kernel_size, strides=1, padding="valid",
                 data_format=None, dilation_rate=1, groups: int = 1, activation=None,
                 use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", dtype="float32", name: str | None = None,
                 input_shape=None):
        super().__init__(name, input_shape)
        kind = type(self).__name__
        self.filters, self.groups, self.use_bias = int(filters), int(groups), bool(use_bias)
        if self.filters <= 0 or self.groups <= 0:
            raise ValueError(f"{kind}: filters and groups must be positive, got filters="
                             f"{filters} groups={groups}")
        self.kernel_size = layout.tuple_of(kernel_size, self.RANK, f"{kind}: kernel_size")
        self.strides = layout.tuple_of(strides, self.RANK, f"{kind}: strides")
        self.dilation_rate = layout.tuple_of(dilation_rate, self.RANK, f"{kind}: dilation_rate")
        if isinstance(padding, str):
            if padding not in self.PADDINGS:
                raise ValueError(f"{kind}: padding must be {', '.join(map(repr, self.PADDINGS))}"
                                 f" or ints, got {padding!r}")
            self.padding = padding
        else:
            self.padding = layout.tuple_of(padding, self.RANK, f"{kind}: padding")
        self.data_format = layout.check_format(data_format, self.DEFAULT_FORMAT, kind)
        self.activation = activations.get(activation)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.dtype = np.dtype(dtype)

    def _channels(self, input_shape) -> int:
        if len(input_shape) != self.RANK + 1:
            raise gc.ShapeError(
                f"{type(self).__name__} {self.name}: expects per-example inputs of "
                f"{self.RANK + 1} axes ({self._axes_text()}), got shape {tuple(input_shape)}")
        layout.warn_if_channels_last(input_shape, self.data_format, self)
        return input_shape[0] if self.data_format == layout.CHANNELS_FIRST else input_shape[-1]

    def _axes_text(self) -> str:
        spatial = ["steps"] if self.RANK == 1 else ["height", "width"]
        axes = ["channels"] + spatial if self.data_format == layout.CHANNELS_FIRST \
            else spatial + ["channels"]
        return ", ".join(axes)

    def build(self, input_shape: tuple[int, ...]) -> None:
        """Kernel (filters, channels / groups, *kernel_size) and bias (filters,)."""
        channels = self._channels(input_shape)
        if channels % self.groups or self.filters % self.groups:
            raise ValueError(f"{type(self).__name__} {self.name}: channels ({channels}) and "
                             f"filters ({self.filters}) must be divisible by groups "
                             f"({self.groups})")
        shape = (self.filters, channels // self.groups) + self.kernel_size
        self.kernel = self.add_weight("kernel", shape,
                                      keras_to_channels_first(self.kernel_initializer),
                                      dtype=self.dtype)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.filters,), self.bias_initializer,
                                        dtype=self.dtype)

    def _pads(self, spatial: tuple[int, ...]):
        """((before, after), ...) per spatial axis."""
        if self.padding == "valid":
            return tuple((0, 0) for _ in spatial)
        if self.padding == "same":
            return tuple(layout.same_pads(size, k, s, d) for size, k, s, d
                         in zip(spatial, self.kernel_size, self.strides, self.dilation_rate))
        if self.padding == "causal":
            return tuple(((k - 1) * d, 0) for k, d in zip(self.kernel_size, self.dilation_rate))
        return tuple((p, p) for p in self.padding)

    def call(self, x: gc.Tensor, training: bool = False) -> gc.Tensor:
        with layout.explained(x.shape[1:], self.data_format, self):
            x = layout.to_channels_first(x, self.data_format)
            out = self._convolve(x)
        if self.bias is not None:
            out = out + gc.reshape(self.bias, (1, -1) + (1,) * self.RANK)
        return layout.from_channels_first(self.activation(out), self.data_format)

    def _convolve(self, x: gc.Tensor) -> gc.Tensor:
        """The channels_first convolution, without bias."""
        pads = self._pads(x.shape[2:])
        if self.RANK == 2:
            return gc.conv2d(x, self.kernel, stride=self.strides, padding=pads,
                             dilation=self.dilation_rate, groups=self.groups)
        image = gc.reshape(x, x.shape[:2] + (1,) + x.shape[2:])
        kernel = gc.reshape(self.kernel, self.kernel.shape[:2] + (1,) + self.kernel.shape[2:])
        out = gc.conv2d(image, kernel, stride=(1,) + self.strides, padding=((0, 0),) + pads,
                        dilation=(1,) + self.dilation_rate, groups=self.groups)
        return gc.reshape(out, out.shape[:2] + out.shape[3:])

    def get_config(self) -> dict:
        padding = self.padding if isinstance(self.padding, str) else list(self.padding)
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": padding, "data_format": self.data_format,
                "dilation_rate": list(self.dilation_rate),
                "groups": self.groups, "activation": activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "dtype": self.dtype.name}


@register_layer
class Conv2D(BaseConv):
    """2-D convolution of (batch, channels, height, width) input (or channels_last);
    kernel stored (filters, channels / groups, kh, kw)."""


@register_layer
class Conv1D(BaseConv):
    """1-D convolution of (batch, steps, channels) input (channels_last, Keras's default;
    or channels_first); kernel stored (filters, channels / groups, k). padding='causal'
    pads (k - 1) * dilation steps at the start only."""

    RANK = 1
    PADDINGS = ("valid", "same", "causal")
    DEFAULT_FORMAT = layout.CHANNELS_LAST


def transposed_length(size: int, kernel: int, stride: int, dilation: int, padding: str,
                      output_padding: int | None) -> int:
    """Keras's output length of a transposed convolution (deconv_output_length)."""
    kernel = (kernel - 1) * dilation + 1
    if output_padding is None:
        return size * stride + (max(kernel - stride, 0) if padding == "valid" else 0)
    pad = kernel // 2 if padding == "same" else 0
    return (size - 1) * stride + kernel - 2 * pad + output_padding


@register_layer
class Conv2DTranspose(Layer):
    """The transpose (gradient) of a 2-D convolution: TensorFlow's conv2d_transpose.

    Output size per Keras: 'valid' size * stride + max(kernel - stride, 0), 'same' size *
    stride, or with output_padding (size - 1) * stride + kernel - 2 * pad + output_padding.
    The kernel is stored (channels, filters, kh, kw), as PyTorch's ConvTranspose2d weight;
    graphc computes it with conv2d_grad_input, the gradient of the convolution from the
    output shape back to the input (so its own gradients are a convolution and a weight
    gradient).
    """

    def __init__(self, filters: int, kernel_size, strides=1, padding="valid",
                 output_padding=None, data_format=None, dilation_rate=1, activation=None,
                 use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", dtype="float32", name: str | None = None,
                 input_shape=None):
        super().__init__(name, input_shape)
        self.filters, self.use_bias = int(filters), bool(use_bias)
        self.kernel_size = _pair(kernel_size, "Conv2DTranspose: kernel_size")
        self.strides = _pair(strides, "Conv2DTranspose: strides")
        self.dilation_rate = _pair(dilation_rate, "Conv2DTranspose: dilation_rate")
        if padding not in ("valid", "same"):
            raise ValueError(f"Conv2DTranspose: padding must be 'valid' or 'same', got "
                             f"{padding!r}")
        self.padding = padding
        self.output_padding = None if output_padding is None else \
            _pair(output_padding, "Conv2DTranspose: output_padding")
        if self.output_padding is not None and any(
                p >= s for p, s in zip(self.output_padding, self.strides)):
            raise ValueError(f"Conv2DTranspose: output_padding {self.output_padding} must be"
                             f" smaller than the strides {self.strides}")
        self.data_format = layout.check_format(data_format, layout.CHANNELS_FIRST,
                                               "Conv2DTranspose")
        self.activation = activations.get(activation)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.dtype = np.dtype(dtype)

    def build(self, input_shape: tuple[int, ...]) -> None:
        """Kernel (channels, filters, kh, kw): Keras's (kh, kw, filters, channels) draw."""
        if len(input_shape) != 3:
            raise gc.ShapeError(f"Conv2DTranspose {self.name}: expects per-example images of "
                                f"3 axes, got shape {tuple(input_shape)}")
        layout.warn_if_channels_last(input_shape, self.data_format, self)
        channels = input_shape[0 if self.data_format == layout.CHANNELS_FIRST else -1]
        self.kernel = self.add_weight(
            "kernel", (channels, self.filters) + self.kernel_size,
            keras_to_channels_first(self.kernel_initializer), dtype=self.dtype)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.filters,), self.bias_initializer,
                                        dtype=self.dtype)

    def output_hw(self, hw) -> tuple[int, int]:
        """The output's (height, width) for input (height, width)."""
        extra = self.output_padding or (None, None)
        return tuple(transposed_length(n, k, s, d, self.padding, p) for n, k, s, d, p
                     in zip(hw, self.kernel_size, self.strides, self.dilation_rate, extra))

    def call(self, x: gc.Tensor, training: bool = False) -> gc.Tensor:
        with layout.explained(x.shape[1:], self.data_format, self):
            x = layout.to_channels_first(x, self.data_format)
            out = self._transpose(x)
        if self.bias is not None:
            out = out + gc.reshape(self.bias, (1, -1, 1, 1))
        return layout.from_channels_first(self.activation(out), self.data_format)

    def _transpose(self, x: gc.Tensor) -> gc.Tensor:
        """conv2d_grad_input of x with the kernel, to the output shape, TF's padding."""
        kernel = self.kernel
        if x.dtype != kernel.dtype:
            common = dtypes.promote(x.dtype, kernel.dtype)
            x, kernel = gc.cast(x, common), gc.cast(kernel, common)
        if x.ndim != 4 or x.shape[1] != self.kernel.shape[0]:
            raise gc.ShapeError(f"Conv2DTranspose {self.name}: expects (batch, "
                                f"{self.kernel.shape[0]}, height, width) input, got {x.shape}")
        hw = self.output_hw(x.shape[2:])
        pads = ((0, 0), (0, 0)) if self.padding == "valid" else tuple(
            layout.same_pads(n, k, s, d) for n, k, s, d
            in zip(hw, self.kernel_size, self.strides, self.dilation_rate))
        out_shape = (x.shape[0], self.filters) + hw
        attrs = dict(stride=self.strides, padding=pads, dilation=self.dilation_rate, groups=1)
        expected = conv_shape(out_shape, self.kernel.shape, **attrs)
        if expected != x.shape:         # a window rule Keras's length formula cannot meet
            raise gc.ShapeError(f"Conv2DTranspose {self.name}: input {x.shape} does not map "
                                f"to output {out_shape} (its convolution gives {expected})")
        return apply("conv2d_grad_input", [x, kernel], **attrs,
                                input_shape=out_shape)

    def get_config(self) -> dict:
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": self.padding,
                "output_padding": None if self.output_padding is None
                else list(self.output_padding),
                "data_format": self.data_format, "dilation_rate": list(self.dilation_rate),
                "activation": activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "dtype": self.dtype.name}


Convolution1D, Convolution2D, Convolution2DTranspose = Conv1D, Conv2D, Conv2DTranspose

# the pools lived here before graphc/nn/pooling.py
from graphc.nn.pooling import (AveragePooling2D, AvgPool2D, MaxPool2D,  # noqa: E402,F401
                               MaxPooling2D)
