"""Graph rebuilding and a tiny rule engine: the machinery every graph pass is written with.

`rebuild(graph, replace)` walks the nodes in order, lets `replace` substitute each node's
outputs, and re-derives the types of nodes whose inputs changed. Nodes, leaves and the graph
itself keep their identity when nothing changed, so `new is old` means "the pass changed
nothing". Outputs keep their order and count: a compiled function maps them by position.

A `Rule(name, op, fn)` rewrites one node: `fn(node, inputs) -> Tensor | None`, where
`inputs` are the node's inputs after earlier rewrites. `apply_rules` sweeps a rule table
over the graph until nothing fires, and counts hits per rule name.
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from graphc.errors import DTypeError, RewriteError, ShapeError
from graphc.ir import Graph, Node, Tensor, TensorType
from graphc.ops.registry import get_op
from graphc.sites import site_of

Replacement = Tensor | Sequence[Tensor] | None
ReplaceFn = Callable[[Node, tuple[Tensor, ...]], Replacement]
DEFAULT_MAX_ITERATIONS = 50
ANY_OP = "*"                            # a rule on ANY_OP is tried on every node, last


# ---- building nodes and constants ----

def _out_types(op: str, types: list[TensorType], attrs: dict) -> list[TensorType]:
    inferred = get_op(op).infer(types, **attrs)
    return [inferred] if isinstance(inferred, TensorType) else list(inferred)


def make(op: str, inputs: Sequence[Tensor], site: str = "", **attrs) -> Tensor:
    """A new node of `op` (types from its shape rule), for rules to build replacements with."""
    try:
        types = _out_types(op, [t.type for t in inputs], attrs)
    except (ShapeError, DTypeError) as exc:
        operands = ", ".join(str(t.type) for t in inputs)
        raise RewriteError(f"rewrite built an ill-typed {op}({operands}): {exc}"
                           f"\n  created at {site or '<unknown>'}") from None
    return Node(op, inputs, attrs, types, site).output


def constant_like(array: np.ndarray, like: Tensor) -> Tensor:
    """A constant leaf holding `array`, named and sited like the value it replaces."""
    array = np.array(array, dtype=like.dtype)
    array.setflags(write=False)
    return Tensor(TensorType(array.shape, array.dtype), name=like.name, role="constant",
                  data=array, site=like.site)


def remake(node: Node, inputs: tuple[Tensor, ...]) -> Node:
    """`node` itself when its inputs are unchanged, else a copy over `inputs`, types re-derived."""
    if all(a is b for a, b in zip(inputs, node.inputs)):
        return node
    types = _out_types(node.op, [t.type for t in inputs], node.attrs)
    return Node(node.op, inputs, node.attrs, types, node.site, [o.name for o in node.outputs])


# ---- rebuilding a graph ----

def _as_outputs(node: Node, result: Replacement) -> tuple[Tensor, ...]:
    outputs = (result,) if isinstance(result, Tensor) else tuple(result)
    if len(outputs) != len(node.outputs):
        raise RewriteError(f"a rewrite of {node.op} gave {len(outputs)} values for"
                           f" {len(node.outputs)} outputs (at {node.site})")
    for old, new in zip(node.outputs, outputs):
        if old.type != new.type:
            raise RewriteError(f"a rewrite of {node.op} changed its type from {old.type} to"
                               f" {new.type} (at {node.site})")
    return outputs


class _Builder:
    """The new graph's leaves and nodes, in definition order, as `rebuild` emits them."""

    def __init__(self, graph: Graph):
        self.leaves = list(graph.inputs)
        self.nodes: list[Node] = []
        self.known: set = set(graph.inputs)

    def emit(self, values: Iterable[Tensor]) -> None:
        """Define `values` and everything new they depend on (an iterative post-order walk)."""
        stack = [(v, False) for v in reversed(list(values))]
        while stack:
            value, expanded = stack.pop()
            if value in self.known:
                continue
            node = value.producer
            if node is None:
                self.known.add(value)
                self.leaves.append(value)
            elif expanded:
                self.nodes.append(node)
                self.known.update(node.outputs)
            else:
                stack.append((value, True))
                stack.extend((v, False) for v in reversed(node.inputs) if v not in self.known)

    def emit_node(self, node: Node) -> None:
        """Define an unchanged node: `emit(node.outputs)`, without the walk when its inputs
        are all defined (the common case: most nodes of most passes stay as they were)."""
        if node.outputs and node.outputs[0] not in self.known \
                and all(v in self.known for v in node.inputs):
            self.nodes.append(node)
            self.known.update(node.outputs)
        else:
            self.emit(node.outputs)


def rebuild(graph: Graph, replace: ReplaceFn) -> Graph:
    """Apply `replace` to every node in order; `graph` itself when nothing changed."""
    env: dict[Tensor, Tensor] = {}
    out = _Builder(graph)
    changed = False
    for node in graph.nodes:
        inputs = tuple(env.get(v, v) for v in node.inputs)
        result = replace(node, inputs)
        outputs = _as_outputs(node, remake(node, inputs).outputs if result is None else result)
        if all(a is b for a, b in zip(outputs, node.outputs)):
            out.emit_node(node)
            continue
        changed = True
        env.update(zip(node.outputs, outputs))
        out.emit(outputs)
    if not changed:
        return graph
    outputs = tuple(env.get(v, v) for v in graph.outputs)
    out.emit(outputs)
    return dataclasses.replace(graph, inputs=tuple(out.leaves), nodes=tuple(out.nodes),
                               outputs=outputs, meta=dict(graph.meta))


# ---- the rule engine ----

@dataclass(frozen=True)
class Rule:
    """A named local rewrite of nodes of `op`: fn(node, inputs) -> replacement or None."""

    name: str
    op: str
    fn: Callable[[Node, tuple[Tensor, ...]], Replacement]


def rule_table(rules: Iterable[Rule]) -> dict[str, list[Rule]]:
    """Rules grouped by the op they trigger on, in the order given."""
    table: dict[str, list[Rule]] = {}
    for rule in rules:
        table.setdefault(rule.op, []).append(rule)
    return table


def _sweep(graph: Graph, table: dict[str, list[Rule]], fired: list[str]) -> Graph:
    """One pass over the graph; the first rule that fires on a node wins."""
    def replace(node: Node, inputs: tuple[Tensor, ...]) -> Replacement:
        for rule in (*table.get(node.op, ()), *table.get(ANY_OP, ())):
            with site_of(node.site):        # nodes a rule builds carry the user's line
                result = rule.fn(node, inputs)
            if result is not None:
                fired.append(rule.name)
                return result
        return None
    return rebuild(graph, replace)


def apply_rules(graph: Graph, rules: Iterable[Rule], hits: Counter | None = None,
                max_iterations: int = DEFAULT_MAX_ITERATIONS) -> Graph:
    """Sweep `rules` over `graph` to a fixpoint; count hits per rule name into `hits`."""
    table = rule_table(rules)
    hits = Counter() if hits is None else hits
    for _ in range(max_iterations):
        fired: list[str] = []
        new = _sweep(graph, table, fired)
        hits.update(fired)
        if new is graph:
            return graph
        graph = new
    last = fired[-1] if fired else "<none>"
    raise RewriteError(f"rewrite did not converge after {max_iterations} iterations:"
                       f" last rule {last}")
