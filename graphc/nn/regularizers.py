"""Keras's weight and activity regularizers: a penalty (a scalar tensor) added to the loss.

    gc.nn.Dense(64, kernel_regularizer=gc.nn.regularizers.L2(1e-4),
                activity_regularizer="l1")

A weight regularizer is applied once per variable by each training (and evaluation) step,
on the variable itself. An activity regularizer is applied to the layer's output at every
call and divided by the number of examples, as Keras 3 does; in a compiled step the rows
that pad a last partial batch are masked out first (`example_mask`), so they add nothing.
"""
from __future__ import annotations

import contextlib
import contextvars

import graphc as gc
from graphc.ir import Tensor

__all__ = ["Regularizer", "L1", "L2", "L1L2", "get", "serialize", "example_mask",
           "activity_penalty"]


class Regularizer:
    """Base: `regularizer(x)` is a scalar penalty of tensor x."""

    def __call__(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict) -> "Regularizer":
        return cls(**config)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.get_config()})"


def _factor(value, what: str) -> float:
    value = float(value)
    if not value >= 0.0 or value == float("inf"):
        raise ValueError(f"{what} must be a finite number >= 0, got {value}")
    return value


class L1L2(Regularizer):
    """l1 * sum(|x|) + l2 * sum(x**2)."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        self.l1, self.l2 = _factor(l1, "l1"), _factor(l2, "l2")

    def __call__(self, x: Tensor) -> Tensor:
        penalty = gc.constant(0.0, x.dtype)
        if self.l1:
            penalty = penalty + self.l1 * gc.sum(gc.abs(x))
        if self.l2:
            penalty = penalty + self.l2 * gc.sum(gc.square(x))
        return penalty

    def get_config(self) -> dict:
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    """l1 * sum(|x|)."""

    def __init__(self, l1: float = 0.01):
        super().__init__(l1=l1)

    def get_config(self) -> dict:
        return {"l1": self.l1}


class L2(L1L2):
    """l2 * sum(x**2)."""

    def __init__(self, l2: float = 0.01):
        super().__init__(l2=l2)

    def get_config(self) -> dict:
        return {"l2": self.l2}


CLASSES = {cls.__name__: cls for cls in (L1, L2, L1L2)}
# tf.keras's l1_l2() defaults: the name should not make a regularizer that does nothing
NAMES = {"l1": L1, "l2": L2, "l1_l2": lambda: L1L2(0.01, 0.01), "l1l2": lambda: L1L2(0.01, 0.01)}


def get(identifier):
    """None, a name ('l1', 'l2', 'l1_l2'), a config dict, a Regularizer or a function of a
    tensor returning a scalar tensor."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str):
        if identifier.lower() not in NAMES:
            raise ValueError(f"unknown regularizer {identifier!r} (known: "
                             f"{', '.join(NAMES)})")
        return NAMES[identifier.lower()]()
    if isinstance(identifier, dict):
        name = identifier.get("class_name")
        if name not in CLASSES:
            raise ValueError(f"unknown regularizer class {name!r} (known: "
                             f"{', '.join(CLASSES)})")
        return CLASSES[name].from_config(identifier.get("config", {}))
    if callable(identifier):
        return identifier
    raise ValueError(f"cannot make a regularizer of {identifier!r}")


def serialize(regularizer):
    """{'class_name', 'config'} of a built-in regularizer (None stays None)."""
    if regularizer is None:
        return None
    if type(regularizer).__name__ not in CLASSES:
        raise ValueError(f"cannot save regularizer {regularizer!r}: only L1, L2 and L1L2 are"
                         f" saved (a function has no config)")
    return {"class_name": type(regularizer).__name__, "config": regularizer.get_config()}


# ---- activity regularization inside a compiled step ----

_mask: contextvars.ContextVar[Tensor | None] = contextvars.ContextVar("example_mask",
                                                                      default=None)


@contextlib.contextmanager
def example_mask(mask: Tensor):
    """Within this block, activity penalties count only rows where `mask` (batch,) is 1."""
    token = _mask.set(mask)
    try:
        yield
    finally:
        _mask.reset(token)


def activity_penalty(regularizer, output: Tensor) -> Tensor:
    """regularizer(output) / examples, padded rows (mask 0) zeroed first."""
    if output.ndim == 0:
        return gc.cast(regularizer(output), gc.float32)
    mask = _mask.get()
    if mask is None or mask.shape[0] != output.shape[0]:
        return gc.cast(regularizer(output), gc.float32) / float(output.shape[0])
    rows = gc.reshape(gc.cast(mask, output.dtype), (output.shape[0],) + (1,) * (output.ndim - 1))
    return gc.cast(regularizer(output * rows), gc.float32) / gc.sum(mask)
