"""Data formats of the convolution and pooling layers, and the settings they share.

graphc's images are channels_first, (batch, channels, height, width), as its conv2d and
pools take them; Keras's default is channels_last, (batch, height, width, channels). The
2-D layers default to channels_first and accept `data_format="channels_last"`: the layer
transposes its input to channels_first and its output back, and the compiler merges the
transposes of consecutive layers (transpose after transpose is one transpose, or none), so
a channels_last stack pays only at its ends. Sequences are (batch, steps, features)
everywhere in graphc (Embedding, recurrent layers, attention), so the 1-D layers default to
channels_last, as in Keras.

An image fed in the channels_last habit to a channels_first layer (`Input((28, 28, 1))`)
reads as 28 channels of 28 x 1 pixels: the layer warns when it is built on such a shape,
and a shape error it causes says so.
"""
from __future__ import annotations

import contextlib
import warnings

import numpy as np

import graphc as gc
from graphc.sites import user_stacklevel

CHANNELS_FIRST, CHANNELS_LAST = "channels_first", "channels_last"
FORMATS = (CHANNELS_FIRST, CHANNELS_LAST)
SMALL_CHANNEL_COUNTS = (1, 2, 3, 4)      # what a last axis of channels usually holds
MIN_SIDE = 8                             # and the sides of such an image at least


class ChannelsLastWarning(UserWarning):
    """A channels_first layer was built on an example shape that looks channels_last."""


def check_format(value, default: str, where: str) -> str:
    """`value` (None: `default`) as 'channels_first' or 'channels_last', else ValueError."""
    value = default if value is None else value
    if value not in FORMATS:
        raise ValueError(f"{where}: data_format must be 'channels_first' or 'channels_last',"
                         f" got {value!r}")
    return value


def tuple_of(value, rank: int, what: str) -> tuple[int, ...]:
    """An int, or `rank` ints, as a tuple of `rank` ints."""
    items = (value,) * rank if isinstance(value, (int, np.integer)) else tuple(value)
    if len(items) != rank or not all(isinstance(v, (int, np.integer)) for v in items):
        raise ValueError(f"{what} must be an int or {rank} ints, got {value!r}")
    return tuple(int(v) for v in items)


def same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """Keras's (TensorFlow's) 'same' padding: output ceil(size / stride), the odd pixel at
    the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def to_channels_first(x: gc.Tensor, data_format: str) -> gc.Tensor:
    """(batch, *spatial, channels) -> (batch, channels, *spatial) when channels_last."""
    if data_format == CHANNELS_FIRST:
        return x
    return gc.transpose(x, (0, x.ndim - 1) + tuple(range(1, x.ndim - 1)))


def from_channels_first(y: gc.Tensor, data_format: str) -> gc.Tensor:
    """(batch, channels, *spatial) -> (batch, *spatial, channels) when channels_last."""
    if data_format == CHANNELS_FIRST:
        return y
    return gc.transpose(y, (0,) + tuple(range(2, y.ndim)) + (1,))


def channels_axis(data_format: str, ndim: int) -> int:
    """The channel axis of a batch of `ndim` axes."""
    return 1 if data_format == CHANNELS_FIRST else ndim - 1


def looks_channels_last(example_shape) -> bool:
    """An image (height, width, channels) of a few channels, read as channels_first: the
    last axis is 1 to 4 and every other axis at least MIN_SIDE (a feature map of many
    channels and few pixels, such as (16, 4, 4), is not taken for one)."""
    shape = tuple(example_shape)
    return len(shape) >= 2 and shape[-1] in SMALL_CHANNEL_COUNTS \
        and min(shape[:-1]) >= MIN_SIDE


def hint(example_shape, data_format: str, layer) -> str:
    """The explanation of the channels_last habit, when the shape suggests it (else '')."""
    if data_format != CHANNELS_FIRST or not looks_channels_last(example_shape):
        return ""
    shape = tuple(example_shape)
    first = (shape[-1],) + shape[:-1]
    return (f"\n  hint: {type(layer).__name__} {layer.name} reads its input channels_first"
            f" (batch, channels, {', '.join(['...'] * (len(shape) - 1))}), so per-example "
            f"shape {shape} is {shape[0]} channels; it looks channels_last. Feed "
            f"{first} (Input({first}), x.transpose(0, {len(shape)}, "
            f"{', '.join(str(a) for a in range(1, len(shape)))})), or build the layer with "
            f"data_format='channels_last'")


def warn_if_channels_last(example_shape, data_format: str, layer) -> None:
    """Warn (once per layer build) when a channels_first layer meets a channels_last shape."""
    text = hint(example_shape, data_format, layer)
    if text:
        warnings.warn(text.strip().removeprefix("hint: "), ChannelsLastWarning,
                      stacklevel=user_stacklevel())


@contextlib.contextmanager
def explained(example_shape, data_format: str, layer):
    """Shape errors raised inside the block gain the channels_last hint, when it applies."""
    try:
        yield
    except gc.ShapeError as exc:
        text = hint(example_shape, data_format, layer)
        if not text or text in str(exc):
            raise
        raise type(exc)(f"{exc}{text}") from None
