"""Permute, RepeatVector and Lambda (Keras 3's names and arguments).

A Lambda layer saves its function by name, never as code: a model file is read without
trust, so loading runs no code from it. Functions made with `def` at module level are
registered with `@gc.nn.register_function` (or passed in `load_model(custom_objects=)`)
and found by their module-qualified name when the model is loaded; a `lambda` works in
memory but cannot be saved.
"""
from __future__ import annotations

from typing import Callable

import graphc as gc
from graphc.nn.base import Layer, register_layer

FUNCTIONS: dict[str, Callable] = {}


@register_layer
class Permute(Layer):
    """Permute the non-batch axes: `dims` is a permutation of 1..rank (Keras's)."""

    def __init__(self, dims, name: str | None = None, input_shape=None):
        super().__init__(name, input_shape)
        self.dims = tuple(int(d) for d in dims)
        if sorted(self.dims) != list(range(1, len(self.dims) + 1)):
            raise ValueError(f"Permute: dims must be a permutation of 1..{len(self.dims)}, "
                             f"got {dims!r}")

    def call(self, x: gc.Tensor, training: bool = False) -> gc.Tensor:
        if x.ndim != len(self.dims) + 1:
            raise gc.ShapeError(f"Permute {self.name}: dims {self.dims} permute "
                                f"{len(self.dims)} axes, the examples have shape "
                                f"{x.shape[1:]}")
        return gc.transpose(x, (0,) + self.dims)

    def get_config(self) -> dict:
        return {**super().get_config(), "dims": list(self.dims)}


@register_layer
class RepeatVector(Layer):
    """(batch, features) -> (batch, n, features): the vector repeated n times."""

    def __init__(self, n: int, name: str | None = None, input_shape=None):
        super().__init__(name, input_shape)
        if int(n) <= 0:
            raise ValueError(f"RepeatVector: n must be positive, got {n}")
        self.n = int(n)

    def call(self, x: gc.Tensor, training: bool = False) -> gc.Tensor:
        if x.ndim != 2:
            raise gc.ShapeError(f"RepeatVector {self.name}: expects (batch, features) input, "
                                f"got shape {x.shape}")
        batch, features = x.shape
        return gc.broadcast_to(gc.reshape(x, (batch, 1, features)), (batch, self.n, features))

    def get_config(self) -> dict:
        return {**super().get_config(), "n": self.n}


def function_name(function: Callable) -> str:
    """`module.qualname`, the key a registered function is saved and found by."""
    return f"{getattr(function, '__module__', None)}.{getattr(function, '__qualname__', '?')}"


def register_function(function: Callable) -> Callable:
    """Make `function` savable in a Lambda layer (decorator); returns it unchanged."""
    if not callable(function) or "<lambda>" in function_name(function) \
            or "<locals>" in function_name(function):
        raise ValueError(f"register_function: {function!r} has no module-level name (a "
                         f"lambda or a nested function): define it with def at module level")
    FUNCTIONS[function_name(function)] = function
    return function


@register_layer
class Lambda(Layer):
    """`function(x, **arguments)` as a layer (x a tensor, or a list for several inputs)."""

    def __init__(self, function: Callable | str, output_shape=None, arguments: dict | None = None,
                 name: str | None = None, input_shape=None):
        super().__init__(name, input_shape)
        if isinstance(function, str):
            if function not in FUNCTIONS:
                raise ValueError(f"Lambda: function {function!r} is not registered: decorate "
                                 f"it with @gc.nn.register_function (or pass it to load_model"
                                 f" in custom_objects) before loading")
            function = FUNCTIONS[function]
        if not callable(function):
            raise TypeError(f"Lambda: function must be callable, got {function!r}")
        self.function = function
        self.output_shape = None if output_shape is None else tuple(output_shape)
        self.arguments = dict(arguments or {})

    def call(self, x, training: bool = False):
        return self.function(x, **self.arguments)

    def get_config(self) -> dict:
        name = function_name(self.function)
        if FUNCTIONS.get(name) is not self.function:
            raise ValueError(f"Lambda {self.name}: cannot save function {name}: graphc saves "
                             f"no code. Define it with def at module level and decorate it "
                             f"with @gc.nn.register_function")
        output_shape = None if self.output_shape is None else list(self.output_shape)
        return {**super().get_config(), "function": name, "output_shape": output_shape,
                "arguments": self.arguments}
