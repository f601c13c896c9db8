"""Pooling and resampling layers: MaxPool1D/2D, AvgPool1D/2D, the global poolings,
UpSampling2D and ZeroPadding2D (Keras 3's names, arguments and defaults).

2-D layers read (batch, channels, height, width) by default, 1-D layers (batch, steps,
channels), either with `data_format` (graphc/nn/layout.py). Pooling padding is Keras's
'valid' or 'same' (output ceil(size / stride); padded pixels never win a max and are not
counted in an average), or graphc's symmetric ints (padding counts as -inf for max and 0
for an average, as PyTorch's pools).
"""
from __future__ import annotations

import numpy as np

import graphc as gc
from graphc.nn import layout
from graphc.nn.base import Layer, register_layer


class _Pool(Layer):
    """Shared settings of the 1-D and 2-D max and average poolings (no weights)."""

    RANK = 2
    DEFAULT_FORMAT = layout.CHANNELS_FIRST
    REDUCE = "max"

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None,
                 name: str | None = None, input_shape=None):
        super().__init__(name, input_shape)
        kind = type(self).__name__
        self.pool_size = layout.tuple_of(pool_size, self.RANK, f"{kind}: pool_size")
        self.strides = self.pool_size if strides is None else \
            layout.tuple_of(strides, self.RANK, f"{kind}: strides")
        if isinstance(padding, str) and padding not in ("valid", "same"):
            raise ValueError(f"{kind}: padding must be 'valid', 'same' or ints (symmetric, at"
                             f" most half the pool size), got {padding!r}")
        if padding == "valid":
            padding = 0
        self.padding = padding if padding == "same" else \
            layout.tuple_of(padding, self.RANK, f"{kind}: padding")
        self.data_format = layout.check_format(data_format, self.DEFAULT_FORMAT, kind)

    def build(self, input_shape) -> None:
        layout.warn_if_channels_last(input_shape, self.data_format, self)

    def call(self, x: gc.Tensor, training: bool = False) -> gc.Tensor:
        with layout.explained(x.shape[1:], self.data_format, self):
            cf = layout.to_channels_first(x, self.data_format)
            if self.RANK == 1:
                cf = gc.reshape(cf, cf.shape[:2] + (1,) + cf.shape[2:])
            out = self._pool(cf, (1,) * (2 - self.RANK) + self.pool_size,
                             (1,) * (2 - self.RANK) + self.strides)
            if self.RANK == 1:
                out = gc.reshape(out, out.shape[:2] + out.shape[3:])
        return layout.from_channels_first(out, self.data_format)

    def _pads(self, hw) -> tuple[tuple[int, int], ...]:
        if self.padding == "same":
            return tuple(layout.same_pads(n, k, s) for n, k, s
                         in zip(hw[-self.RANK:], self.pool_size, self.strides))
        return tuple((p, p) for p in self.padding)

    def _pool(self, x: gc.Tensor, size, stride) -> gc.Tensor:
        """Pool channels_first 4-d `x`; asymmetric or wide padding goes through gc.pad."""
        pads = ((0, 0),) * (2 - self.RANK) + self._pads(x.shape[2:])
        symmetric = all(a == b and 2 * a <= k for (a, b), k in zip(pads, size))
        counted = self.padding != "same"        # graphc's ints count the pads
        if symmetric:
            padding = tuple(a for a, _ in pads)
            if self.REDUCE == "max":
                return gc.max_pool2d(x, size, stride, padding)
            return gc.avg_pool2d(x, size, stride, padding, count_include_pad=counted)
        fill = -np.inf if self.REDUCE == "max" else 0.0
        padded = gc.pad(x, ((0, 0), (0, 0)) + pads, constant_values=fill)
        if self.REDUCE == "max":
            return gc.max_pool2d(padded, size, stride)
        sums = gc.avg_pool2d(padded, size, stride) * float(size[0] * size[1])
        return sums / self._counts(x.shape[2:], size, stride, pads, x.dtype)

    @staticmethod
    def _counts(hw, size, stride, pads, dtype) -> np.ndarray:
        """How many input pixels each 'same' window covers."""
        counts = []
        for n, k, s, (before, _), out in zip(hw, size, stride, pads,
                                             (-(-n // s) for n, s in zip(hw, stride))):
            starts = np.arange(out) * s - before
            counts.append(np.minimum(starts + k, n) - np.maximum(starts, 0))
        return np.outer(*counts).astype(dtype)

    def get_config(self) -> dict:
        padding = self.padding if isinstance(self.padding, str) else list(self.padding)
        return {**super().get_config(), "pool_size": list(self.pool_size),
                "strides": list(self.strides), "padding": padding,
                "data_format": self.data_format}


@register_layer
class MaxPool2D(_Pool):
    """Max pooling of (batch, channels, height, width) input (or channels_last)."""


@register_layer
class AvgPool2D(_Pool):
    """Average pooling of (batch, channels, height, width) input (or channels_last)."""

    REDUCE = "avg"


@register_layer
class MaxPool1D(_Pool):
    """Max pooling of (batch, steps, channels) input (or channels_first)."""

    RANK = 1
    DEFAULT_FORMAT = layout.CHANNELS_LAST


@register_layer
class AvgPool1D(_Pool):
    """Average pooling of (batch, steps, channels) input (or channels_first)."""

    RANK = 1
    DEFAULT_FORMAT = layout.CHANNELS_LAST
    REDUCE = "avg"


class _GlobalPool(Layer):
    """Mean or max over every spatial axis: (batch, channels) or, keepdims, size-1 axes."""

    RANK = 2
    DEFAULT_FORMAT = layout.CHANNELS_FIRST
    REDUCE = "mean"

    def __init__(self, data_format=None, keepdims: bool = False, name: str | None = None,
                 input_shape=None):
        super().__init__(name, input_shape)
        self.data_format = layout.check_format(data_format, self.DEFAULT_FORMAT,
                                               type(self).__name__)
        self.keepdims = bool(keepdims)

    def call(self, x: gc.Tensor, training: bool = False) -> gc.Tensor:
        if x.ndim != self.RANK + 2:
            raise gc.ShapeError(f"{type(self).__name__} {self.name}: expects per-example "
                                f"inputs of {self.RANK + 1} axes, got shape {x.shape[1:]}"
                                f"{layout.hint(x.shape[1:], self.data_format, self)}")
        channels = layout.channels_axis(self.data_format, x.ndim)
        axes = tuple(a for a in range(1, x.ndim) if a != channels)
        reduce = gc.mean if self.REDUCE == "mean" else gc.max
        return reduce(x, axis=axes, keepdims=self.keepdims)

    def get_config(self) -> dict:
        return {**super().get_config(), "data_format": self.data_format,
                "keepdims": self.keepdims}


@register_layer
class GlobalAveragePooling2D(_GlobalPool):
    """Mean over height and width."""


@register_layer
class GlobalMaxPooling2D(_GlobalPool):
    """Maximum over height and width."""

    REDUCE = "max"


@register_layer
class GlobalAveragePooling1D(_GlobalPool):
    """Mean over the steps of (batch, steps, features) input (or channels_first)."""

    RANK = 1
    DEFAULT_FORMAT = layout.CHANNELS_LAST


@register_layer
class GlobalMaxPooling1D(_GlobalPool):
    """Maximum over the steps of (batch, steps, features) input (or channels_first)."""

    RANK = 1
    DEFAULT_FORMAT = layout.CHANNELS_LAST
    REDUCE = "max"


def bilinear_matrix(size: int, scale: int) -> np.ndarray:
    """(size * scale, size) weights of bilinear upsampling with half-pixel centers (the
    source position (i + 0.5) / scale - 0.5, clamped to the edges), as tf.image.resize and
    PyTorch's interpolate(align_corners=False)."""
    position = np.clip((np.arange(size * scale) + 0.5) / scale - 0.5, 0, size - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, size - 1)
    weights = np.zeros((size * scale, size))
    rows = np.arange(size * scale)
    np.add.at(weights, (rows, low), 1.0 - (position - low))
    np.add.at(weights, (rows, high), position - low)
    return weights


@register_layer
class UpSampling2D(Layer):
    """Repeat rows and columns `size` times ('nearest'), or interpolate ('bilinear')."""

    def __init__(self, size=(2, 2), data_format=None, interpolation: str = "nearest",
                 name: str | None = None, input_shape=None):
        super().__init__(name, input_shape)
        self.size = layout.tuple_of(size, 2, "UpSampling2D: size")
        if interpolation not in ("nearest", "bilinear"):
            raise ValueError(f"UpSampling2D: interpolation must be 'nearest' or 'bilinear', "
                             f"got {interpolation!r}")
        self.interpolation = interpolation
        self.data_format = layout.check_format(data_format, layout.CHANNELS_FIRST,
                                               "UpSampling2D")

    def call(self, x: gc.Tensor, training: bool = False) -> gc.Tensor:
        if x.ndim != 4:
            raise gc.ShapeError(f"UpSampling2D {self.name}: expects per-example images of 3 "
                                f"axes, got shape {x.shape[1:]}")
        x = layout.to_channels_first(x, self.data_format)
        n, c, h, w = x.shape
        sh, sw = self.size
        if self.interpolation == "nearest":
            grid = gc.broadcast_to(gc.reshape(x, (n, c, h, 1, w, 1)), (n, c, h, sh, w, sw))
            out = gc.reshape(grid, (n, c, h * sh, w * sw))
        else:
            rows = gc.constant(bilinear_matrix(h, sh).astype(x.dtype))
            cols = gc.constant(bilinear_matrix(w, sw).T.astype(x.dtype))
            out = gc.matmul(gc.matmul(rows, x), cols)
        return layout.from_channels_first(out, self.data_format)

    def get_config(self) -> dict:
        return {**super().get_config(), "size": list(self.size),
                "data_format": self.data_format, "interpolation": self.interpolation}


@register_layer
class ZeroPadding2D(Layer):
    """Zeros around each image: padding an int, (rows, columns) symmetric, or
    ((top, bottom), (left, right))."""

    def __init__(self, padding=(1, 1), data_format=None, name: str | None = None,
                 input_shape=None):
        super().__init__(name, input_shape)
        if isinstance(padding, (int, np.integer)):
            padding = ((padding, padding), (padding, padding))
        elif all(isinstance(p, (int, np.integer)) for p in padding):
            padding = tuple((p, p) for p in layout.tuple_of(padding, 2, "ZeroPadding2D"))
        self.padding = tuple(layout.tuple_of(p, 2, "ZeroPadding2D: padding") for p in padding)
        if len(self.padding) != 2 or min(min(p) for p in self.padding) < 0:
            raise ValueError(f"ZeroPadding2D: padding must be non-negative ints, (rows, "
                             f"columns) or ((top, bottom), (left, right)), got {padding!r}")
        self.data_format = layout.check_format(data_format, layout.CHANNELS_FIRST,
                                               "ZeroPadding2D")

    def call(self, x: gc.Tensor, training: bool = False) -> gc.Tensor:
        if x.ndim != 4:
            raise gc.ShapeError(f"ZeroPadding2D {self.name}: expects per-example images of 3 "
                                f"axes, got shape {x.shape[1:]}")
        spatial = (1, 2) if self.data_format == layout.CHANNELS_LAST else (2, 3)
        widths = [(0, 0)] * 4
        for axis, pair in zip(spatial, self.padding):
            widths[axis] = pair
        return gc.pad(x, widths)

    def get_config(self) -> dict:
        return {**super().get_config(), "padding": [list(p) for p in self.padding],
                "data_format": self.data_format}


MaxPooling1D, MaxPooling2D, AveragePooling1D, AveragePooling2D = (MaxPool1D, MaxPool2D,
                                                                  AvgPool1D, AvgPool2D)
GlobalAvgPool1D, GlobalAvgPool2D = GlobalAveragePooling1D, GlobalAveragePooling2D
GlobalMaxPool1D, GlobalMaxPool2D = GlobalMaxPooling1D, GlobalMaxPooling2D
