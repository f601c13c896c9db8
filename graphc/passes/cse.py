"""Common subexpression elimination: one node per (op, attrs, inputs), one constant per value.

Variables and placeholders are never merged: each is its own state or feed. Random ops are
merged only when all their attributes, the derived seed included, are equal: such ops draw
the very same stream at every step (TF1's op-seed semantics), so they are one value.
"""
from __future__ import annotations

import hashlib

import numpy as np

from graphc.ir import Graph, Node, Tensor
from graphc.ops.registry import get_op
from graphc.passes import Pass
from graphc.rewrite import rebuild, remake


def constant_key(value: Tensor) -> tuple:
    """Constants with equal keys hold the same bits in the same dtype and shape."""
    # A digest, not the bytes: a key must not copy a large constant (a dataset, say).
    digest = hashlib.blake2b(np.ascontiguousarray(value.data)).digest()
    return (value.dtype.str, value.shape, digest)


def canonical_constants(graph: Graph) -> dict[Tensor, Tensor]:
    """Each constant leaf mapped to the first constant of the graph with the same value."""
    first: dict[tuple, Tensor] = {}
    return {v: first.setdefault(constant_key(v), v) for v in graph.inputs
            if v.role == "constant"}


def node_key(node: Node, inputs: tuple[Tensor, ...]) -> tuple:
    """Equal keys compute equal values; a commutative op's operands count as a set."""
    ids = tuple(id(v) for v in inputs)
    if get_op(node.op).commutative:
        ids = tuple(sorted(ids))
    return (node.op, node.attrs_key(), ids)


def eliminate_common_subexpressions(graph: Graph) -> Graph:
    """Merge equal constants and nodes that compute the same value (first one wins)."""
    constants = canonical_constants(graph)
    seen: dict[tuple, tuple[Tensor, ...]] = {}

    def replace(node: Node, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        inputs = tuple(constants.get(v, v) for v in inputs)
        key = node_key(node, inputs)
        if key not in seen:
            seen[key] = remake(node, inputs).outputs
        return seen[key]
    return rebuild(graph, replace)


cse = Pass("cse", eliminate_common_subexpressions)
