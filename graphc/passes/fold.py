"""Constant folding: evaluate nodes whose inputs are all constants with the interpreter.

A node is kept when its result would be large (folding broadcast_to of a scalar into a
million-element array bloats the graph and the upload), when it is random (its value
changes at every step) or a collective (its value comes from the other ranks, at run time),
or when evaluating it fails (the error belongs to run time).
"""
from __future__ import annotations

import numpy as np

from graphc.interp import run_node
from graphc.ir import Graph, Node, Tensor
from graphc.ops.registry import get_op
from graphc.passes import Pass
from graphc.rewrite import constant_like, rebuild

MAX_FOLDED_ELEMENTS = 4096
SMALL = 16          # a fold may always produce this many elements
# Ops whose output holds only values of their input: a uniform input stays uniform.
_VALUE_PRESERVING = ("broadcast_to", "reshape")


def is_constant(value: Tensor) -> bool:
    """A constant leaf (variables are state, not constants)."""
    return value.producer is None and value.role == "constant"


def scalar_value(value: Tensor):
    """The one value all elements of a constant (possibly broadcast or reshaped) hold, or None."""
    while value.op in _VALUE_PRESERVING:
        value = value.producer.inputs[0]
    if value.producer is not None or value.role != "constant" or value.size == 0:
        return None
    flat = np.asarray(value.data).reshape(-1)
    if flat.size > 1 and flat[1] != flat[0]:
        return None                     # most constants fail here, before a full scan
    return flat[0] if np.all(flat == flat[0]) else None


def is_scalar(value: Tensor, number) -> bool:
    """True when every element of `value` is known to equal `number`."""
    found = scalar_value(value)
    return found is not None and bool(found == number)


def foldable(node: Node, inputs: tuple[Tensor, ...], max_elements: int) -> bool:
    """All inputs constant, deterministic, and every result small and no larger than the
    data it comes from: broadcasting a scalar stays a broadcast, which kernels read as a
    literal, instead of becoming an array every kernel has to load."""
    if not all(is_constant(v) for v in inputs) or \
            get_op(node.op).kind in ("random", "collective"):
        return False            # most nodes: decided without sizing anything
    largest = max((v.size for v in inputs), default=0)
    return all(out.size <= min(max_elements, max(largest, SMALL)) for out in node.outputs)


def evaluate_constant(node: Node, inputs: tuple[Tensor, ...]) -> list[Tensor] | None:
    """The node's outputs as constants, or None when its reference raises."""
    try:
        arrays = run_node(node, [v.data for v in inputs])
    except (ArithmeticError, IndexError, ValueError):
        return None
    return [constant_like(a, out) for a, out in zip(arrays, node.outputs)]


def fold_node(node: Node, inputs: tuple[Tensor, ...],
              max_elements: int = MAX_FOLDED_ELEMENTS) -> list[Tensor] | None:
    """The node's outputs as constants when it is foldable, else None (a rewrite rule)."""
    if not foldable(node, inputs, max_elements):
        return None
    return evaluate_constant(node, inputs)


def fold_constants(graph: Graph, max_elements: int = MAX_FOLDED_ELEMENTS) -> Graph:
    """Replace every foldable node by constants; folding cascades down the graph in one sweep."""
    return rebuild(graph, lambda node, inputs: fold_node(node, inputs, max_elements))


fold = Pass("fold", fold_constants)
