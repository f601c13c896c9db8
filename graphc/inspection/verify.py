"""Check a graph's invariants, and compare two graphs structurally.

`verify(graph)` checks single assignment, def-before-use, that every op is registered with
exactly its record's attributes and arity, that stored output types equal the ones the op's
shape rule re-derives, and that the outputs are defined. A failure raises VerifyError
showing the equation in IR text, the user's line that created it, and its neighbours.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphc.errors import DTypeError, ShapeError, VerifyError
from graphc.ir import Graph, Node, Tensor, TensorType
from graphc.ops import load_all
from graphc.inspection.printer import (assign_names, format_equation, format_literal,
                                       format_operand, header_leaves, is_literal)

CONTEXT = 3
# Stage -> the ops allowed there (None: any registered op). Later stages add their sets.
STAGES: dict[str, frozenset | None] = {"graph": None}


def verify(graph: Graph, stage: str = "graph") -> None:
    """Raise VerifyError when `graph` breaks an IR invariant of `stage`."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}: expected one of {sorted(STAGES)}")
    names = names_for_message(graph)
    state = _State(_check_leaves(graph, names), names, STAGES[stage],
                   {out: i for i, node in enumerate(graph.nodes) for out in node.outputs})
    for index, node in enumerate(graph.nodes):
        problem = _node_problem(node, state)
        if problem:
            raise VerifyError(failure_text(graph, index, problem, names))
        state.defined.update(node.outputs)
    for value in graph.outputs:
        if value not in state.defined:
            raise VerifyError(f"verify: graph output {_describe(value, names)} is not defined"
                              f" in the graph\n  created at {value.site or '<unknown>'}")


@dataclass
class _State:
    """What the walk over the equations knows."""

    defined: set
    names: dict
    allowed: frozenset | None
    producers: dict


def _check_leaves(graph: Graph, names: dict) -> set:
    """The set of values the inputs define; a leaf listed twice is an error."""
    defined: set = set()
    for leaf in graph.inputs:
        if leaf in defined:
            raise VerifyError(f"verify: graph input {_describe(leaf, names)} is listed twice"
                              f"\n  created at {leaf.site or '<unknown>'}")
        defined.add(leaf)
    return defined


def _node_problem(node: Node, state: _State) -> str:
    """What is wrong with one equation, or ''."""
    opdef = load_all().get(node.op)
    if opdef is None:
        return f"op {node.op!r} is not in the registry"
    if state.allowed is not None and node.op not in state.allowed:
        return f"op {node.op!r} is not allowed at this stage"
    return (_signature_problem(node, opdef) or _operand_problem(node, state)
            or _output_problem(node, state) or _type_problem(node, opdef))


def _signature_problem(node: Node, opdef) -> str:
    if set(node.attrs) != set(opdef.attrs):
        return (f"op {node.op} has attributes {sorted(node.attrs)}, its record declares"
                f" {sorted(opdef.attrs)}")
    if opdef.arity is not None and len(node.inputs) != opdef.arity:
        return f"op {node.op} takes {opdef.arity} operands, this node has {len(node.inputs)}"
    return ""


def _operand_problem(node: Node, state: _State) -> str:
    for position, value in enumerate(node.inputs):
        if value in state.defined:
            continue
        where = (f"it is defined later, by equation #{state.producers[value] + 1}"
                 if value in state.producers else "it is not defined in the graph")
        return (f"operand {position} ({_describe(value, state.names)}) is used before it is"
                f" defined: {where}")
    return ""


def _output_problem(node: Node, state: _State) -> str:
    for out in node.outputs:
        if out in state.defined:
            return f"value {_describe(out, state.names)} is assigned twice (single assignment)"
        if out.producer is not node:
            return f"output {_describe(out, state.names)} does not name this node as producer"
    return ""


def _type_problem(node: Node, opdef) -> str:
    try:
        inferred = opdef.infer([v.type for v in node.inputs], **node.attrs)
    except (ShapeError, DTypeError) as exc:
        return f"op {node.op}'s shape rule rejects its operands: {exc}"
    inferred = [inferred] if isinstance(inferred, TensorType) else list(inferred)
    stored = [out.type for out in node.outputs]
    if inferred != stored:
        return (f"stored output type {', '.join(map(str, stored))} differs from the type"
                f" {', '.join(map(str, inferred))} op {node.op}'s shape rule derives")
    return ""


def _describe(value: Tensor, names: dict) -> str:
    return f"{format_operand(value, names)}:{value.type}"


# ---- the failure message ----

def failure_text(graph: Graph, index: int, problem: str, names: dict | None = None) -> str:
    """The problem, the equation, the user's line, and ±CONTEXT neighbouring equations."""
    names = names or names_for_message(graph)
    node = graph.nodes[index]
    lo, hi = max(0, index - CONTEXT), min(len(graph.nodes), index + CONTEXT + 1)
    context = [f"  {'>>>' if i == index else '   '} #{i + 1}: "
               f"{format_equation(graph.nodes[i], names)}" for i in range(lo, hi)]
    return "\n".join([f"verify: {problem}",
                      f"  in equation #{index + 1}: {format_equation(node, names)}",
                      f"  created at {node.site or '<unknown>'}",
                      "  context:", *context])


def names_for_message(graph: Graph) -> dict[Tensor, str]:
    """Printed names, plus `?1`, `?2`, ... for values the graph uses but never defines."""
    names = assign_names(graph)
    used = [v for node in graph.nodes for v in node.inputs] + list(graph.outputs)
    undefined = [v for v in dict.fromkeys(used) if v not in names and not is_literal(v)]
    names.update((value, f"?{i}") for i, value in enumerate(undefined, 1))
    return names


# ---- structural equality ----

def graphs_equal(g1: Graph, g2: Graph) -> bool:
    """Same leaves (role, type, printed name, constant values) and the same equations in order
    (op, attrs, input wiring, output types) and outputs; sites and variable values aside."""
    leaves1, leaves2 = header_leaves(g1), header_leaves(g2)
    if len(leaves1) != len(leaves2) or len(g1.nodes) != len(g2.nodes):
        return False
    names1, names2 = assign_names(g1), assign_names(g2)
    if not all(_leaves_equal(a, b, names1, names2) for a, b in zip(leaves1, leaves2)):
        return False
    keys1, keys2 = _wiring_keys(g1), _wiring_keys(g2)
    return (all(_nodes_equal(a, b, keys1, keys2) for a, b in zip(g1.nodes, g2.nodes))
            and [_key(v, keys1) for v in g1.outputs] == [_key(v, keys2) for v in g2.outputs])


def _leaves_equal(a: Tensor, b: Tensor, names1: dict, names2: dict) -> bool:
    if (a.role, a.type, names1[a]) != (b.role, b.type, names2[b]):
        return False
    return a.role != "constant" or _arrays_equal(np.asarray(a.data), np.asarray(b.data))


def _arrays_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal values; any NaN equals any NaN, and -0.0 differs from 0.0."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind != "f":
        return bool(np.array_equal(a, b))
    numbers = ~np.isnan(a)
    return bool(np.array_equal(np.isnan(a), np.isnan(b)) and np.array_equal(a[numbers], b[numbers])
                and np.array_equal(np.signbit(a[numbers]), np.signbit(b[numbers])))


def _wiring_keys(graph: Graph) -> dict[Tensor, tuple]:
    """Each value's position: header leaf index, or (node index, output index)."""
    keys = {leaf: ("leaf", i) for i, leaf in enumerate(header_leaves(graph))}
    for i, node in enumerate(graph.nodes):
        for j, out in enumerate(node.outputs):
            keys.setdefault(out, ("node", i, j))
    return keys


def _key(value: Tensor, keys: dict) -> tuple:
    if is_literal(value):
        return ("literal", format_literal(value))
    return keys.get(value, ("undefined", format_operand(value, {})))


def _nodes_equal(a: Node, b: Node, keys1: dict, keys2: dict) -> bool:
    return (a.op == b.op and a.attrs_key() == b.attrs_key()
            and [o.type for o in a.outputs] == [o.type for o in b.outputs]
            and [_key(v, keys1) for v in a.inputs] == [_key(v, keys2) for v in b.inputs])
