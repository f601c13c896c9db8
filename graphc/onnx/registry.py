"""The converter table: one entry per ONNX op type, and the view of a node converters get.

A converter is `fn(node: NodeView) -> Tensor | list[Tensor]`, registered with the attributes
it understands; a node carrying any other attribute is refused before it is converted, so an
attribute graphc would ignore can never change a number silently.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from graphc import dtypes
from graphc.builder import cast, constant
from graphc.ir import Tensor
from graphc.onnx.errors import NeedsValue, UnsupportedError


@dataclass(frozen=True)
class Converter:
    op_type: str
    fn: Callable
    attrs: frozenset
    min_opset: int
    max_outputs: int


CONVERTERS: dict[str, Converter] = {}


def converter(*op_types: str, attrs: Sequence[str] = (), min_opset: int = 1,
              max_outputs: int = 1):
    """Register `fn` as the converter of `op_types`."""
    def register(fn):
        for op_type in op_types:
            if op_type in CONVERTERS:
                raise ValueError(f"ONNX op {op_type} has two converters")
            CONVERTERS[op_type] = Converter(op_type, fn, frozenset(attrs), min_opset,
                                            max_outputs)
        return fn
    return register


class NodeView:
    """One ONNX node as a converter sees it: graphc tensors in, parsed attributes."""

    def __init__(self, op_type: str, name: str, opset: int, attrs: dict,
                 inputs: Sequence[Tensor | None], input_names: Sequence[str],
                 output_names: Sequence[str], weights: dict | None = None,
                 input_types: Sequence[int | None] = (), graph_outputs: frozenset = frozenset()):
        self.op_type = op_type
        self.name = name
        self.opset = opset
        self.attrs = attrs
        self.inputs = list(inputs)
        self.input_names = list(input_names)
        self.output_names = list(output_names)
        self.n_outputs = len(self.output_names)
        self.weights = weights if weights is not None else {}
        self.input_types = list(input_types) + [None] * (len(self.inputs) - len(input_types))
        self.graph_outputs = graph_outputs
        self.subgraph = None     # run(graph, bindings, tag) -> outputs, set by the converter walk

    def input_type(self, index: int) -> int | None:
        """The ONNX element type of input `index` where the model states it, else None."""
        return self.input_types[index] if index < len(self.input_types) else None

    def is_graph_output(self, index: int) -> bool:
        return self.output_names[index] in self.graph_outputs

    def output_name(self, index: int) -> str:
        return self.output_names[index]

    def weight_copy(self, x: Tensor, name: str) -> Tensor:
        """A variable of its own named `name`, starting at x's value: created once per
        model and shared by all its specializations (in the model's `variables`)."""
        if name not in self.weights:
            from graphc.builder import variable
            self.weights[name] = variable(x.get_value(), name=name)
        return self.weights[name]

    def attr(self, name: str, default=None):
        return self.attrs.get(name, default)

    def input(self, index: int) -> Tensor | None:
        """Input `index`, or None when it is absent (an optional input left out)."""
        return self.inputs[index] if index < len(self.inputs) else None

    def has(self, index: int) -> bool:
        return self.input(index) is not None

    def static(self, index: int, what: str) -> np.ndarray | None:
        """The value of input `index`, which must be known at import (None when absent)."""
        x = self.input(index)
        if x is None:
            return None
        return static_value(x, what, self.input_names[index])

    def static_ints(self, index: int, what: str) -> list[int] | None:
        value = self.static(index, what)
        return None if value is None else [int(v) for v in np.asarray(value).reshape(-1)]

    def unsupported(self, problem: str) -> UnsupportedError:
        return UnsupportedError(problem)


def static_value(x: Tensor, what: str, name: str) -> np.ndarray:
    """The value of `x` at import: a constant's data, a variable's current value; a graph
    input raises NeedsValue (the model then binds that input's value)."""
    if x.role == "constant":
        return np.asarray(x.data)
    if x.role == "variable":
        return x.get_value()
    if x.role == "placeholder":
        raise NeedsValue(name)
    return _computed_value(x, what, name)


def _computed_value(x: Tensor, what: str, name: str) -> np.ndarray:
    """A value computed from graph inputs: those inputs are bound by value (NeedsValue) and
    the graph rebuilt, after which it folds to a constant. Values that depend on variables
    (weights that training changes) stay refused."""
    from graphc.interp import interpret
    from graphc.ir import Graph
    leaves = Graph.from_outputs([x]).inputs
    fed = [leaf for leaf in leaves if leaf.role == "placeholder"]
    if fed:
        raise NeedsValue(fed[0].name)
    if any(leaf.role == "variable" for leaf in leaves):
        raise UnsupportedError(f"{what} (input {name!r}) must be known at import, but it is "
                               f"computed from the model's weights")
    return np.asarray(interpret(x))


def const(value, dtype) -> Tensor:
    return constant(np.asarray(value, dtype=dtype))


def like(value, x: Tensor) -> Tensor:
    """A constant of x's dtype."""
    return constant(np.asarray(value, dtype=x.dtype))


def to_float(x: Tensor) -> Tensor:
    return x if dtypes.is_float(x.dtype) else cast(x, dtypes.float32)
