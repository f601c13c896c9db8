"""Activation layers: ReLU, LeakyReLU, ELU, Softmax (Keras 3's names, arguments, defaults).

Each is its activation function as a layer, with the function's parameters as settings;
`gc.nn.Activation("relu")` covers the activations without parameters.
"""
from __future__ import annotations

import graphc as gc
from graphc.nn import activations
from graphc.nn.base import Layer, register_layer


@register_layer
class ReLU(Layer):
    """x for x >= threshold, else negative_slope * (x - threshold); capped at max_value
    when given (Keras's ReLU layer; the defaults are max(x, 0))."""

    def __init__(self, max_value: float | None = None, negative_slope: float = 0.0,
                 threshold: float = 0.0, name: str | None = None, input_shape=None):
        super().__init__(name, input_shape)
        if max_value is not None and float(max_value) < 0:
            raise ValueError(f"ReLU: max_value must be >= 0, got {max_value}")
        if float(negative_slope) < 0:
            raise ValueError(f"ReLU: negative_slope must be >= 0, got {negative_slope}")
        self.max_value = None if max_value is None else float(max_value)
        self.negative_slope, self.threshold = float(negative_slope), float(threshold)

    def call(self, x: gc.Tensor, training: bool = False) -> gc.Tensor:
        if self.negative_slope == 0.0 and self.threshold == 0.0:
            out = gc.relu(x)
        else:
            below = self.negative_slope * (x - self.threshold)
            out = gc.where(gc.greater_equal(x, self.threshold), x, below)
        return out if self.max_value is None else gc.minimum(out, self.max_value)

    def get_config(self) -> dict:
        return {**super().get_config(), "max_value": self.max_value,
                "negative_slope": self.negative_slope, "threshold": self.threshold}


@register_layer
class LeakyReLU(Layer):
    """x for x >= 0, else negative_slope * x (Keras 3's default slope 0.3)."""

    def __init__(self, negative_slope: float = 0.3, name: str | None = None,
                 input_shape=None):
        super().__init__(name, input_shape)
        if float(negative_slope) < 0:
            raise ValueError(f"LeakyReLU: negative_slope must be >= 0, got {negative_slope}")
        self.negative_slope = float(negative_slope)

    def call(self, x: gc.Tensor, training: bool = False) -> gc.Tensor:
        return activations.leaky_relu(x, self.negative_slope)

    def get_config(self) -> dict:
        return {**super().get_config(), "negative_slope": self.negative_slope}


@register_layer
class ELU(Layer):
    """x for x > 0, else alpha * (exp(x) - 1)."""

    def __init__(self, alpha: float = 1.0, name: str | None = None, input_shape=None):
        super().__init__(name, input_shape)
        self.alpha = float(alpha)

    def call(self, x: gc.Tensor, training: bool = False) -> gc.Tensor:
        return activations.elu(x, self.alpha)

    def get_config(self) -> dict:
        return {**super().get_config(), "alpha": self.alpha}


@register_layer
class Softmax(Layer):
    """Softmax along `axis` (counted with the batch axis; default the last)."""

    def __init__(self, axis: int = -1, name: str | None = None, input_shape=None):
        super().__init__(name, input_shape)
        if not isinstance(axis, int) or isinstance(axis, bool):
            raise ValueError(f"Softmax: axis must be an int, got {axis!r}")
        self.axis = axis

    def call(self, x: gc.Tensor, training: bool = False) -> gc.Tensor:
        if not -x.ndim <= self.axis < x.ndim or self.axis % x.ndim == 0:
            raise gc.ShapeError(f"Softmax {self.name}: axis {self.axis} is not a feature axis"
                                f" of a batch of shape {x.shape}")
        return gc.softmax(x, axis=self.axis)

    def get_config(self) -> dict:
        return {**super().get_config(), "axis": self.axis}
