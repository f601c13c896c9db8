"""Decomposition: expand composite ops into the primitives the code generator would rather see.

`DECOMPOSITIONS` maps an op name to `fn(node, inputs) -> Tensor`, which builds the expansion
(public graphc functions may be used: the new nodes carry the composite node's site). An
expansion may itself contain composite ops; the rule driver repeats until none is left.

The table is empty on purpose for now: every registered op has a kernel of its own (clip,
softmax, log_softmax and one_hot are single fused kernels, faster than their expansions).
An op whose codegen is dropped in favour of primitives gets its entry here.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable, Mapping

from graphc.ir import Graph, Node, Tensor
from graphc.passes import Pass
from graphc.rewrite import Rule, apply_rules

Decomposition = Callable[[Node, tuple[Tensor, ...]], Tensor]

DECOMPOSITIONS: dict[str, Decomposition] = {}


def decomposition_rules(table: Mapping[str, Decomposition]) -> list[Rule]:
    """One rule `decompose_<op>` per table entry."""
    return [Rule(f"decompose_{op}", op, fn) for op, fn in table.items()]


def decompose_graph(graph: Graph, hits: Counter | None = None,
                    table: Mapping[str, Decomposition] | None = None) -> Graph:
    """Expand every op of `table` (default: DECOMPOSITIONS) until none is left."""
    table = DECOMPOSITIONS if table is None else table
    if not table:
        return graph
    return apply_rules(graph, decomposition_rules(table), hits)


decompose = Pass("decompose", decompose_graph, counts_hits=True)
