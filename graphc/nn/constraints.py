"""Keras's weight constraints: a projection applied to a variable after every optimizer step.

    gc.nn.Dense(64, kernel_constraint=gc.nn.constraints.MaxNorm(3))

The projection is part of the compiled training step (it rewrites the optimizer's new value
before it is stored), so it costs no extra pass over the weights. `axis` is Keras's: for a
Conv2D kernel, which graphc stores OIHW, the axes count in Keras's HWIO layout
(`MaxNorm(axis=[0, 1, 2])` bounds each filter), and graphc transposes for you.
"""
from __future__ import annotations

import graphc as gc
from graphc.ir import Tensor

__all__ = ["Constraint", "MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm", "get", "serialize"]

EPSILON = 1e-7


def _axes(axis) -> tuple[int, ...] | int:
    return tuple(int(a) for a in axis) if isinstance(axis, (list, tuple)) else int(axis)


def _norms(w: Tensor, axis) -> Tensor:
    return gc.sqrt(gc.sum(gc.square(w), axis=axis, keepdims=True))


class Constraint:
    """Base: `constraint(w)` is the projected value of w."""

    def __call__(self, w: Tensor) -> Tensor:
        return w

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict) -> "Constraint":
        return cls(**config)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.get_config()})"


class MaxNorm(Constraint):
    """Scale slices along `axis` whose L2 norm exceeds max_value down to it:
    w * clip(n, 0, max_value) / (eps + n)."""

    def __init__(self, max_value: float = 2.0, axis=0):
        self.max_value, self.axis = float(max_value), _axes(axis)

    def __call__(self, w):
        norms = _norms(w, self.axis)
        return w * (gc.clip(norms, 0.0, self.max_value) / (EPSILON + norms))

    def get_config(self) -> dict:
        return {"max_value": self.max_value, "axis": _json_axis(self.axis)}


class MinMaxNorm(Constraint):
    """Norms pulled into [min_value, max_value] at `rate` (1 = all the way)."""

    def __init__(self, min_value: float = 0.0, max_value: float = 1.0, rate: float = 1.0,
                 axis=0):
        self.min_value, self.max_value = float(min_value), float(max_value)
        self.rate, self.axis = float(rate), _axes(axis)

    def __call__(self, w):
        norms = _norms(w, self.axis)
        desired = self.rate * gc.clip(norms, self.min_value, self.max_value) + \
            (1.0 - self.rate) * norms
        return w * (desired / (EPSILON + norms))

    def get_config(self) -> dict:
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate,
                "axis": _json_axis(self.axis)}


class UnitNorm(Constraint):
    """Slices along `axis` scaled to norm 1: w / (eps + n)."""

    def __init__(self, axis=0):
        self.axis = _axes(axis)

    def __call__(self, w):
        return w / (EPSILON + _norms(w, self.axis))

    def get_config(self) -> dict:
        return {"axis": _json_axis(self.axis)}


class NonNeg(Constraint):
    """Negative entries set to zero."""

    def __call__(self, w):
        return w * gc.cast(gc.greater_equal(w, 0.0), w.dtype)


def _json_axis(axis):
    return list(axis) if isinstance(axis, tuple) else axis


CLASSES = {cls.__name__: cls for cls in (MaxNorm, MinMaxNorm, UnitNorm, NonNeg)}
NAMES = {"max_norm": MaxNorm, "min_max_norm": MinMaxNorm, "unit_norm": UnitNorm,
         "non_neg": NonNeg, "nonneg": NonNeg}


def get(identifier):
    """None, a name ('max_norm', 'non_neg', ...), a config dict, a Constraint or a
    function of a tensor returning a tensor of its shape."""
    if identifier is None or isinstance(identifier, Constraint):
        return identifier
    if isinstance(identifier, str):
        if identifier.lower() not in NAMES:
            raise ValueError(f"unknown constraint {identifier!r} (known: {', '.join(NAMES)})")
        return NAMES[identifier.lower()]()
    if isinstance(identifier, dict):
        name = identifier.get("class_name")
        if name not in CLASSES:
            raise ValueError(f"unknown constraint class {name!r} (known: "
                             f"{', '.join(CLASSES)})")
        return CLASSES[name].from_config(identifier.get("config", {}))
    if callable(identifier):
        return identifier
    raise ValueError(f"cannot make a constraint of {identifier!r}")


def serialize(constraint):
    """{'class_name', 'config'} of a built-in constraint (None stays None)."""
    if constraint is None:
        return None
    if type(constraint).__name__ not in CLASSES:
        raise ValueError(f"cannot save constraint {constraint!r}: only built-in constraints"
                         f" are saved (a function has no config)")
    return {"class_name": type(constraint).__name__, "config": constraint.get_config()}
