"""The numpy reference interpreter: the oracle every device result is compared against."""
from __future__ import annotations

import numpy as np

from graphc.errors import IndexRangeError, VerifyError
from graphc.feeds import check_feed, missing_feed_error, resolve_feed_keys
from graphc.ir import Graph, Node, Tensor
from graphc.ops.registry import get_op


def leaf_value(leaf: Tensor, feeds: dict) -> np.ndarray:
    """The value of a leaf: its feed, a variable's current value, or a constant."""
    if leaf in feeds:
        return feeds[leaf]
    if leaf.role == "variable":
        return leaf.data.get()
    if leaf.role == "constant":
        return leaf.data
    raise missing_feed_error(leaf)


def run_node(node: Node, args: list[np.ndarray], step: int = 0) -> list[np.ndarray]:
    """Evaluate one node with its op's numpy reference (IndexRangeError for an index out
    of its op's range)."""
    opdef = get_op(node.op)
    problem = index_problem(node, args)
    if problem is not None:
        raise IndexRangeError(problem)
    extra = {"step": step} if opdef.kind == "random" else {}
    with np.errstate(all="ignore"):
        result = opdef.ref(*args, **node.attrs, **extra)
    results = result if isinstance(result, (tuple, list)) else [result]
    return [_conform(node, out, np.asarray(r)) for out, r in zip(node.outputs, results)]


def index_problem(node: Node, args: list) -> str | None:
    """What is wrong with the first out-of-range index `node` would read, or None."""
    rule = get_op(node.op).index_range
    valid = rule([v.type for v in node.inputs], **node.attrs) if rule is not None else None
    if valid is None:
        return None
    values = np.asarray(args[valid.operand])
    bad = (values < valid.low) | (values >= valid.high)
    if not bad.any():
        return None
    where = np.unravel_index(int(np.argmax(bad)), values.shape) if values.ndim else ()
    where = tuple(int(i) for i in where)
    operand = node.inputs[valid.operand]
    name = f" {operand.name!r}" if operand.name else ""
    return (f"{node.op}: {valid.role} {values[where]} at position {where} of {valid.roles}"
            f"{name} is outside [{valid.low}, {valid.high}), the valid {valid.roles} of "
            f"{valid.of} ({int(bad.sum())} of {values.size} out of range)\n"
            f"  created at {node.site or '<unknown>'}")


def _conform(node: Node, out: Tensor, array: np.ndarray) -> np.ndarray:
    if array.shape != out.shape:
        raise VerifyError(f"op {node.op}'s reference gave shape {array.shape}, its shape rule"
                          f" says {out.shape} (at {node.site})")
    return array.astype(out.dtype, copy=False)


def evaluate(graph: Graph, feeds: dict[Tensor, np.ndarray], step: int = 0) -> list[np.ndarray]:
    """Run every node of `graph` in order; return the outputs."""
    env: dict[Tensor, np.ndarray] = {leaf: leaf_value(leaf, feeds) for leaf in graph.inputs}
    env.update(feeds)
    for node in graph.nodes:
        if all(out in feeds for out in node.outputs):
            continue                    # an intermediate value the user fed
        results = run_node(node, [env[v] for v in node.inputs], step)
        env.update(zip(node.outputs, results))
    return [env[out] for out in graph.outputs]


def interpret(outputs, feed: dict | None = None, step: int = 0):
    """Evaluate `outputs` (a tensor or a list) in numpy. `step` advances the random streams."""
    single = isinstance(outputs, Tensor)
    outputs = [outputs] if single else list(outputs)
    graph = Graph.from_outputs(outputs)
    feeds = resolve_feed_keys(feed or {}, graph.placeholders)
    checked = {t: (check_feed(t, v) if t.role == "placeholder" else np.asarray(v, t.dtype))
               for t, v in feeds.items()}
    results = evaluate(Graph.from_outputs(outputs, inputs=list(checked)), checked, step)
    return results[0] if single else results
