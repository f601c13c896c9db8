"""Core layers: Dense, Flatten, Reshape, Dropout, Activation, and the merges Add, Concatenate.

Shapes in settings exclude the batch axis, as in Keras.
"""
from __future__ import annotations

import numpy as np

import graphc as gc
from graphc.nn import activations, initializers
from graphc.nn.base import Layer, register_layer
from graphc.ops.random import derived_seed as _derived_seed


@register_layer
class Dense(Layer):
    """activation(x @ kernel + bias) on the last axis; kernel (in, units), bias (units,)."""

    def __init__(self, units: int, activation=None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 dtype="float32", name: str | None = None, input_shape=None):
        super().__init__(name, input_shape)
        if int(units) <= 0:
            raise ValueError(f"Dense: units must be positive, got {units}")
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.dtype = np.dtype(dtype)

    def build(self, input_shape: tuple[int, ...]) -> None:
        """kernel (input_shape[-1], units) and bias (units,)."""
        if not input_shape:
            raise ValueError(f"Dense {self.name}: needs inputs of at least 2 axes (batch,"
                             f" features)")
        self.kernel = self.add_weight("kernel", (input_shape[-1], self.units),
                                      self.kernel_initializer, dtype=self.dtype)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.units,), self.bias_initializer,
                                        dtype=self.dtype)

    def call(self, x: gc.Tensor, training: bool = False) -> gc.Tensor:
        rows = x if x.ndim <= 2 else gc.reshape(x, (-1, x.shape[-1]))
        out = gc.matmul(rows, self.kernel)       # (batch, steps, f) as one product of rows
        if self.bias is not None:
            out = out + self.bias
        out = self.activation(out)
        return out if x.ndim <= 2 else gc.reshape(out, x.shape[:-1] + (self.units,))

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units,
                "activation": activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "dtype": self.dtype.name}


@register_layer
class Activation(Layer):
    """An activation by name (relu, sigmoid, tanh, softmax, ...) or a callable."""

    def __init__(self, activation, name: str | None = None, input_shape=None):
        super().__init__(name, input_shape)
        self.activation = activations.get(activation)

    def call(self, x: gc.Tensor, training: bool = False) -> gc.Tensor:
        return self.activation(x)

    def get_config(self) -> dict:
        return {**super().get_config(), "activation": activations.serialize(self.activation)}


@register_layer
class Flatten(Layer):
    """(batch, d1, d2, ...) -> (batch, d1 * d2 * ...)."""

    def __init__(self, name: str | None = None, input_shape=None):
        super().__init__(name, input_shape)

    def call(self, x: gc.Tensor, training: bool = False) -> gc.Tensor:
        return gc.reshape(x, (x.shape[0], int(np.prod(x.shape[1:], dtype=np.int64))))


@register_layer
class Reshape(Layer):
    """Reshape each example to `target_shape` (one entry may be -1)."""

    def __init__(self, target_shape, name: str | None = None, input_shape=None):
        super().__init__(name, input_shape)
        self.target_shape = tuple(int(d) for d in target_shape)
        if sum(d == -1 for d in self.target_shape) > 1:
            raise ValueError(f"Reshape: at most one -1 in target_shape, got {target_shape}")

    def call(self, x: gc.Tensor, training: bool = False) -> gc.Tensor:
        size = int(np.prod(x.shape[1:], dtype=np.int64))
        known = int(np.prod([d for d in self.target_shape if d != -1], dtype=np.int64))
        shape = tuple(size // known if d == -1 else d for d in self.target_shape)
        if int(np.prod(shape, dtype=np.int64)) != size:
            raise gc.ShapeError(f"Reshape {self.name}: cannot reshape examples of shape "
                                f"{tuple(x.shape[1:])} to {self.target_shape}")
        return gc.reshape(x, (x.shape[0],) + shape)

    def get_config(self) -> dict:
        return {**super().get_config(), "target_shape": list(self.target_shape)}


@register_layer
class Dropout(Layer):
    """Inverted dropout while training (gc.random.dropout), the identity at inference.

    The mask is fresh at every training step (the stream follows the optimizer's step).
    `seed=None` draws a fixed op seed from graphc's global seed when the layer is made; it
    is saved with the config, so a reloaded model continues the same streams.
    """

    def __init__(self, rate: float, seed: int | None = None, name: str | None = None,
                 input_shape=None):
        super().__init__(name, input_shape)
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"Dropout: rate must be in [0, 1), got {rate}")
        self.rate = float(rate)
        self.seed = int(seed) if seed is not None else _derived_seed(None) % 2 ** 31

    def call(self, x: gc.Tensor, training: bool = False) -> gc.Tensor:
        if not training or self.rate == 0.0:
            return x
        return gc.random.dropout(x, self.rate, seed=self.seed)

    def get_config(self) -> dict:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@register_layer
class Add(Layer):
    """The sum of a list of same-shaped inputs (functional API)."""

    def call(self, xs, training: bool = False) -> gc.Tensor:
        total = xs[0]
        for x in xs[1:]:
            total = total + x
        return total


@register_layer
class Concatenate(Layer):
    """Join a list of inputs along `axis` (counted with the batch axis, default last)."""

    def __init__(self, axis: int = -1, name: str | None = None):
        super().__init__(name)
        self.axis = int(axis)

    def call(self, xs, training: bool = False) -> gc.Tensor:
        return gc.concatenate(list(xs), axis=self.axis)

    def get_config(self) -> dict:
        return {**super().get_config(), "axis": self.axis}
