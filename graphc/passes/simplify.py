"""Algebraic simplification: a table of small, exact local rewrites applied to a fixpoint.

Every rule keeps the replaced value's shape and dtype: `x + 0` where the zero broadcasts x
up is `broadcast_to(x)`, not `x`. Left out on purpose, because they are not exact:
`exp(log x) -> x` (x < 0 gives NaN), `x * 0 -> 0` (NaN * 0 and inf * 0 are NaN),
`x - x -> 0` (inf - inf). `x + 0 -> x` turns a -0.0 sum into -0.0 instead of +0.0, which
compares equal; like XLA, we accept that. `log(exp x) -> x` is exact in real arithmetic and
more accurate than the original where exp overflows.

The table ends with constant folding on every op: a rewrite can hand a constant to a node
the fold pass passed over (`sum(c * 1)` with a large c becomes `sum(c)`, which folds), and
folding inside the fixpoint keeps the pipeline idempotent.
"""
from __future__ import annotations

from collections import Counter

from graphc.ir import Graph, Node, Tensor
from graphc.passes import Pass
from graphc.passes.fold import fold_node, is_scalar
from graphc.passes.pad_sums import pad_sum_to_concatenate
from graphc.passes.take_rules import (drop_single_concatenate, take_of_concatenate,
                                     take_of_unit_axis, take_through_transpose)
from graphc.rewrite import ANY_OP, Rule, apply_rules, make

# ---- matching helpers ----

def as_output(value: Tensor, node: Node) -> Tensor | None:
    """`value` standing in for the node's output: itself, or broadcast up to the output's shape."""
    out = node.output
    if value.type == out.type:
        return value
    if value.dtype != out.dtype:
        return None
    return make("broadcast_to", [value], node.site, shape=out.shape)


def source(value: Tensor, op: str) -> Tensor | None:
    """The input of the `op` node that produced `value`, or None when another op did."""
    return value.producer.inputs[0] if value.op == op else None


# ---- arithmetic identities ----

def add_zero(node: Node, inputs: tuple[Tensor, ...]) -> Tensor | None:
    """x + 0 -> x and 0 + x -> x."""
    a, b = inputs
    if is_scalar(b, 0):
        return as_output(a, node)
    return as_output(b, node) if is_scalar(a, 0) else None


def subtract_zero(node: Node, inputs: tuple[Tensor, ...]) -> Tensor | None:
    """x - 0 -> x."""
    a, b = inputs
    return as_output(a, node) if is_scalar(b, 0) else None


def multiply_one(node: Node, inputs: tuple[Tensor, ...]) -> Tensor | None:
    """x * 1 -> x and 1 * x -> x."""
    a, b = inputs
    if is_scalar(b, 1):
        return as_output(a, node)
    return as_output(b, node) if is_scalar(a, 1) else None


def divide_one(node: Node, inputs: tuple[Tensor, ...]) -> Tensor | None:
    """x / 1 -> x."""
    a, b = inputs
    return as_output(a, node) if is_scalar(b, 1) else None


def power_one(node: Node, inputs: tuple[Tensor, ...]) -> Tensor | None:
    """x ** 1 -> x."""
    a, b = inputs
    return as_output(a, node) if is_scalar(b, 1) else None


def cancel_double_negative(node: Node, inputs: tuple[Tensor, ...]) -> Tensor | None:
    """-(-x) -> x."""
    inner = source(inputs[0], "negative")
    return None if inner is None else as_output(inner, node)


def cancel_log_exp(node: Node, inputs: tuple[Tensor, ...]) -> Tensor | None:
    """log(exp x) -> x."""
    inner = source(inputs[0], "exp")
    return None if inner is None else as_output(inner, node)


# ---- movement and no-op rewrites ----

def merge_transposes(node: Node, inputs: tuple[Tensor, ...]) -> Tensor | None:
    """transpose(transpose(x, p), q) -> transpose(x, p∘q), or x when that is the identity."""
    (x,) = inputs
    inner = source(x, "transpose")
    if inner is None:
        return None
    perm = tuple(x.producer.attrs["perm"][axis] for axis in node.attrs["perm"])
    if perm == tuple(range(len(perm))):
        return as_output(inner, node)
    return make("transpose", [inner], node.site, perm=perm)


def drop_identity_transpose(node: Node, inputs: tuple[Tensor, ...]) -> Tensor | None:
    """transpose(x, (0, 1, ...)) -> x."""
    perm = tuple(node.attrs["perm"])
    return as_output(inputs[0], node) if perm == tuple(range(len(perm))) else None


def merge_reshapes(node: Node, inputs: tuple[Tensor, ...]) -> Tensor | None:
    """reshape(reshape(x)) -> one reshape of x (or x when the shapes match)."""
    inner = source(inputs[0], "reshape")
    if inner is None:
        return None
    if inner.shape == node.output.shape:
        return as_output(inner, node)
    return make("reshape", [inner], node.site, shape=node.output.shape)


def merge_broadcasts(node: Node, inputs: tuple[Tensor, ...]) -> Tensor | None:
    """broadcast_to(broadcast_to(x)) -> one broadcast_to of x."""
    inner = source(inputs[0], "broadcast_to")
    if inner is None:
        return None
    return make("broadcast_to", [inner], node.site, shape=node.output.shape)


def drop_same_type(node: Node, inputs: tuple[Tensor, ...]) -> Tensor | None:
    """A reshape, broadcast_to or cast that changes nothing -> its input."""
    return inputs[0] if inputs[0].type == node.output.type else None


def drop_empty_reduction(node: Node, inputs: tuple[Tensor, ...]) -> Tensor | None:
    """A reduction over no axes -> its input."""
    return as_output(inputs[0], node) if tuple(node.attrs["axes"]) == () else None


RULES: tuple[Rule, ...] = (
    Rule("add_zero", "add", add_zero),
    Rule("pad_sum_to_concatenate", "add", pad_sum_to_concatenate),
    Rule("subtract_zero", "subtract", subtract_zero),
    Rule("multiply_one", "multiply", multiply_one),
    Rule("divide_one", "divide", divide_one),
    Rule("power_one", "power", power_one),
    Rule("cancel_double_negative", "negative", cancel_double_negative),
    Rule("cancel_log_exp", "log", cancel_log_exp),
    Rule("drop_identity_transpose", "transpose", drop_identity_transpose),
    Rule("merge_transposes", "transpose", merge_transposes),
    Rule("drop_noop_reshape", "reshape", drop_same_type),
    Rule("merge_reshapes", "reshape", merge_reshapes),
    Rule("drop_noop_broadcast", "broadcast_to", drop_same_type),
    Rule("merge_broadcasts", "broadcast_to", merge_broadcasts),
    Rule("drop_noop_cast", "cast", drop_same_type),
    Rule("drop_empty_sum", "reduce_sum", drop_empty_reduction),
    Rule("drop_empty_max", "reduce_max", drop_empty_reduction),
    Rule("drop_empty_min", "reduce_min", drop_empty_reduction),
    Rule("drop_single_concatenate", "concatenate", drop_single_concatenate),
    Rule("take_through_transpose", "take", take_through_transpose),
    Rule("take_of_concatenate", "take", take_of_concatenate),
    Rule("take_of_unit_axis", "take", take_of_unit_axis),
    Rule("fold_constant", ANY_OP, fold_node),
)


def simplify_graph(graph: Graph, hits: Counter | None = None) -> Graph:
    """Apply the rule table to a fixpoint, counting hits per rule."""
    return apply_rules(graph, RULES, hits)


simplify = Pass("simplify", simplify_graph, counts_hits=True)
