"""Activations by name, built from graphc's ops: `get('relu')(x)`.

gelu is exact (erf), as Keras 3's default; gelu(x, approximate=True) is the tanh form.
softmax and log_softmax act on the last axis. elu/selu evaluate exp only on the
non-positive side, so no inf reaches a gradient.
"""
from __future__ import annotations

import math

import graphc as gc
from graphc.ir import Tensor

SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805


def linear(x: Tensor) -> Tensor:
    """The identity."""
    return x


def relu(x: Tensor) -> Tensor:
    """max(x, 0)."""
    return gc.relu(x)


def relu6(x: Tensor) -> Tensor:
    """min(max(x, 0), 6)."""
    return gc.minimum(gc.relu(x), 6.0)


def leaky_relu(x: Tensor, negative_slope: float = 0.2) -> Tensor:
    """x for x > 0, else negative_slope * x (Keras's default slope 0.2)."""
    return gc.where(gc.greater(x, 0.0), x, negative_slope * x)


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """x for x > 0, else alpha * (exp(x) - 1)."""
    return gc.where(gc.greater(x, 0.0), x, alpha * (gc.exp(gc.minimum(x, 0.0)) - 1.0))


def selu(x: Tensor) -> Tensor:
    """scale * elu(x, alpha) with Klambauer et al.'s constants."""
    return SELU_SCALE * elu(x, SELU_ALPHA)


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + exp(-x))."""
    return gc.sigmoid(x)


def hard_sigmoid(x: Tensor) -> Tensor:
    """relu6(x + 3) / 6 (Keras 3's definition)."""
    return relu6(x + 3.0) / 6.0


def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent."""
    return gc.tanh(x)


def softplus(x: Tensor) -> Tensor:
    """log(1 + exp(x)), computed as relu(x) + log(1 + exp(-|x|))."""
    return gc.relu(x) + gc.log(1.0 + gc.exp(-gc.abs(x)))


def softsign(x: Tensor) -> Tensor:
    """x / (1 + |x|)."""
    return x / (1.0 + gc.abs(x))


def silu(x: Tensor) -> Tensor:
    """x * sigmoid(x) (also called swish)."""
    return x * gc.sigmoid(x)


def gelu(x: Tensor, approximate: bool = False) -> Tensor:
    """x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2))) (Keras 3's default); with approximate,
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    if approximate:
        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)
        return 0.5 * x * (1.0 + gc.tanh(inner))
    return 0.5 * x * (1.0 + gc.erf(x * (1.0 / math.sqrt(2.0))))


def exponential(x: Tensor) -> Tensor:
    """exp(x)."""
    return gc.exp(x)


def softmax(x: Tensor) -> Tensor:
    """Softmax over the last axis."""
    return gc.softmax(x, axis=-1)


def log_softmax(x: Tensor) -> Tensor:
    """Log-softmax over the last axis."""
    return gc.log_softmax(x, axis=-1)


ACTIVATIONS = {fn.__name__: fn for fn in (
    linear, relu, relu6, leaky_relu, elu, selu, sigmoid, hard_sigmoid, tanh, softplus,
    softsign, silu, gelu, exponential, softmax, log_softmax)}
ACTIVATIONS["swish"] = silu


def get(identifier):
    """An activation from a name, None (linear), or a callable (as is)."""
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        if identifier not in ACTIVATIONS:
            raise ValueError(f"unknown activation {identifier!r} (known: "
                             f"{', '.join(sorted(ACTIVATIONS))})")
        return ACTIVATIONS[identifier]
    if callable(identifier):
        return identifier
    raise ValueError(f"cannot make an activation of {identifier!r}")


def serialize(activation) -> str:
    """The name of an activation, for a layer's config."""
    if isinstance(activation, str):
        return activation
    for name, fn in ACTIVATIONS.items():
        if fn is activation:
            return name
    for fn in (gc.relu, gc.sigmoid, gc.tanh, gc.softmax):
        if fn is activation:
            return fn.__name__
    raise ValueError(f"cannot save activation {activation!r}: use a name from "
                     f"{', '.join(sorted(ACTIVATIONS))}")
