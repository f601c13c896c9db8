"""Dead-code elimination: drop nodes and constants that no graph output needs."""
from __future__ import annotations

import dataclasses

from graphc.ir import Graph, Tensor
from graphc.passes import Pass


def live_values(graph: Graph) -> set[Tensor]:
    """Every value some graph output depends on (the outputs are the roots)."""
    live = set(graph.outputs)
    for node in reversed(graph.nodes):
        if any(out in live for out in node.outputs):
            live.update(node.inputs)
    return live


def eliminate_dead_code(graph: Graph) -> Graph:
    """The graph without dead nodes and unused constants; placeholders and variables stay."""
    live = live_values(graph)
    nodes = tuple(n for n in graph.nodes if any(out in live for out in n.outputs))
    # Placeholders and variables are the function's interface: keep them even when unused.
    leaves = tuple(v for v in graph.inputs if v in live or v.role != "constant")
    if len(nodes) == len(graph.nodes) and len(leaves) == len(graph.inputs):
        return graph
    return dataclasses.replace(graph, inputs=leaves, nodes=nodes, meta=dict(graph.meta))


dce = Pass("dce", eliminate_dead_code)
