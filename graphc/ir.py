"""The IR: immutable typed values, single-assignment nodes, and graphs in topological order.

A `Tensor` is both the user's symbolic handle and the IR value: an identity object with a
static type, an optional name hint and, unless it is a leaf, the `Node` that produced it.
Leaves are placeholders (fed per call), variables (state that lives on the device) and
constants. A `Graph` is an ordered view over the nodes that lead to some outputs.
"""
from __future__ import annotations

import itertools

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from graphc.dtypes import short_name

@dataclass(frozen=True)
class TensorType:
    """Static shape and dtype."""

    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))     # not np.prod: asked for thousands of times

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __str__(self) -> str:
        return f"{short_name(self.dtype)}[{','.join(map(str, self.shape))}]"


class VariableStorage:
    """The value of a variable: a host array, plus device copies the runtime keeps."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self.resident: dict = {}       # runtime Device -> ResidentArray

    def get(self) -> np.ndarray:
        for resident in self.resident.values():
            self.array = resident.read()        # the device copy when it is newer
        return self.array.copy()

    def set(self, array: np.ndarray) -> None:
        self.array = array
        for resident in self.resident.values():
            resident.write(array)


class Tensor:
    """A symbolic value: a leaf (placeholder, variable, constant) or the output of a node.

    Its numpy operators (`+`, `@`, `x[i]`, `.sum()`, ...) are installed by
    graphc/tensor_methods.py."""

    __slots__ = ("type", "name", "producer", "role", "data", "site", "__weakref__")

    def __init__(self, type_: TensorType, *, name: str | None = None, producer: "Node | None" = None,
                 role: str = "node", data=None, site: str = ""):
        self.type = type_
        self.name = name
        self.producer = producer
        self.role = role
        self.data = data
        self.site = site

    shape = property(lambda self: self.type.shape, doc="Static shape, a tuple of ints.")
    dtype = property(lambda self: self.type.dtype, doc="numpy dtype.")
    ndim = property(lambda self: self.type.ndim, doc="Number of dimensions.")
    size = property(lambda self: self.type.size, doc="Number of elements.")

    @property
    def op(self) -> str:
        """The producing op's name, or the leaf role."""
        return self.producer.op if self.producer is not None else self.role

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"<Tensor{label} {self.type} = {self.op}>"


def is_among(value, values: Iterable) -> bool:
    """Is `value` one of `values`, by identity? (`in` on a list or tuple calls ==, which is
    elementwise on tensors; dicts and sets hash tensors by identity and need no help.)"""
    return any(v is value for v in values)


def position_of(value, values: Sequence) -> int:
    """The index of `value` in `values`, by identity (list.index would call ==)."""
    for i, v in enumerate(values):
        if v is value:
            return i
    raise ValueError(f"{value!r} is not among the given values")


class Node:
    """One equation: `outputs = op[attrs](inputs)`, created at `site` in the user's code."""

    __slots__ = ("op", "inputs", "attrs", "outputs", "site", "serial")
    _created = itertools.count()

    def __init__(self, op: str, inputs: Sequence[Tensor], attrs: dict,
                 out_types: Sequence[TensorType], site: str = "", names: Sequence = ()):
        self.op = op
        self.inputs = tuple(inputs)
        self.attrs = dict(attrs)
        self.site = site
        self.serial = next(Node._created)    # inputs exist first: a topological order
        names = tuple(names) or (None,) * len(out_types)
        self.outputs = tuple(Tensor(t, name=n, producer=self, site=site)
                             for t, n in zip(out_types, names))

    @property
    def output(self) -> Tensor:
        """The single output of a single-output node."""
        (out,) = self.outputs
        return out

    def attrs_key(self) -> tuple:
        """A hashable form of the attributes (for CSE and equality)."""
        return tuple(sorted((k, _hashable(v)) for k, v in self.attrs.items()))

    def __repr__(self) -> str:
        return f"<Node {self.op} -> {', '.join(str(o.type) for o in self.outputs)}>"


def _hashable(value):
    if isinstance(value, np.ndarray):
        return (value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value


@dataclass(frozen=True, eq=False)
class Graph:
    """Leaves, nodes in topological order, and outputs."""

    inputs: tuple[Tensor, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[Tensor, ...]
    name: str = "graph"
    meta: dict = field(default_factory=dict)

    @staticmethod
    def from_outputs(outputs: Iterable[Tensor], inputs: Iterable[Tensor] = (),
                     name: str = "graph") -> "Graph":
        """The graph of everything `outputs` depend on; `inputs` come first among the leaves."""
        outputs = tuple(outputs)
        nodes, leaves = _toposort(outputs, stop=set(inputs))
        first = list(dict.fromkeys(inputs))
        rest = [leaf for leaf in leaves if leaf not in set(first)]
        return Graph(tuple(first + rest), tuple(nodes), outputs, name)

    @property
    def placeholders(self) -> tuple[Tensor, ...]:
        return tuple(v for v in self.inputs if v.role == "placeholder")

    @property
    def variables(self) -> tuple[Tensor, ...]:
        return tuple(v for v in self.inputs if v.role == "variable")

    def values(self) -> list[Tensor]:
        """Every value: leaves, then node outputs in order."""
        return list(self.inputs) + [out for node in self.nodes for out in node.outputs]

    def users(self) -> dict[Tensor, list[Node]]:
        """Which nodes read each value."""
        users: dict[Tensor, list[Node]] = {v: [] for v in self.values()}
        for node in self.nodes:
            for value in node.inputs:
                users.setdefault(value, []).append(node)
        return users

    def __str__(self) -> str:
        from graphc.inspection.printer import format_graph
        return format_graph(self)


def _toposort(outputs: Sequence[Tensor], stop: set) -> tuple[list[Node], list[Tensor]]:
    """Iterative post-order walk: nodes in dependency order, and the leaves met on the way."""
    nodes: list[Node] = []
    leaves: list[Tensor] = []
    seen: set = set()
    stack: list[tuple[Tensor, bool]] = [(out, False) for out in reversed(outputs)]
    while stack:
        value, expanded = stack.pop()
        node = value.producer
        if value in stop or node is None:
            if value not in seen:
                seen.add(value)
                leaves.append(value)
            continue
        if expanded:
            if node not in seen:
                seen.add(node)
                nodes.append(node)
            continue
        if node in seen:
            continue
        stack.append((value, True))
        stack.extend((inp, False) for inp in reversed(node.inputs) if inp not in seen)
    return nodes, leaves
