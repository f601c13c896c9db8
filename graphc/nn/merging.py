"""Merge layers over a list of inputs (functional API): Multiply, Subtract, Average,
Maximum, Minimum, beside core's Add and Concatenate. Inputs broadcast as numpy's."""
from __future__ import annotations

import functools

import graphc as gc
from graphc.nn.base import Layer, register_layer


class _Merge(Layer):
    """Reduce a list of at least two inputs elementwise with `combine`."""

    EXACTLY: int | None = None

    def call(self, xs, training: bool = False) -> gc.Tensor:
        xs = list(xs) if isinstance(xs, (list, tuple)) else [xs]
        wanted = self.EXACTLY
        if (wanted is None and len(xs) < 2) or (wanted is not None and len(xs) != wanted):
            count = "at least 2" if wanted is None else f"exactly {wanted}"
            raise ValueError(f"{type(self).__name__} {self.name}: takes a list of {count} "
                             f"inputs, got {len(xs)}")
        return self.combine(xs)

    def combine(self, xs: list[gc.Tensor]) -> gc.Tensor:
        raise NotImplementedError


@register_layer
class Multiply(_Merge):
    """The elementwise product of the inputs."""

    def combine(self, xs):
        return functools.reduce(gc.multiply, xs)


@register_layer
class Subtract(_Merge):
    """inputs[0] - inputs[1]."""

    EXACTLY = 2

    def combine(self, xs):
        return xs[0] - xs[1]


@register_layer
class Average(_Merge):
    """The elementwise mean of the inputs."""

    def combine(self, xs):
        return functools.reduce(gc.add, xs) * (1.0 / len(xs))


@register_layer
class Maximum(_Merge):
    """The elementwise maximum of the inputs."""

    def combine(self, xs):
        return functools.reduce(gc.maximum, xs)


@register_layer
class Minimum(_Merge):
    """The elementwise minimum of the inputs."""

    def combine(self, xs):
        return functools.reduce(gc.minimum, xs)
